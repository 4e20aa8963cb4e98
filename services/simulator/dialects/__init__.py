"""Registry of venue dialects: one module per dialect, found by the venue's name.

``get_dialect("binance-perp")`` imports ``dialects/binance_perp.py`` on first use, so adding a
dialect is adding one file with a ``@register``-decorated ``Dialect`` subclass.
"""

from __future__ import annotations

import importlib

from .base import Dialect, HttpReply

__all__ = ["Dialect", "HttpReply", "get_dialect", "register"]

_REGISTRY: dict[str, type[Dialect]] = {}


def register(cls: type[Dialect]) -> type[Dialect]:
    """Class decorator: make a dialect available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def get_dialect(name: str) -> type[Dialect]:
    """The dialect class for a venue name; raises LookupError if there is none."""
    module = name.replace("-", "_")
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            raise LookupError(f"no simulator dialect for venue {name!r}") from None
    if name not in _REGISTRY:
        raise LookupError(f"dialects/{module}.py does not register a dialect named {name!r}")
    return _REGISTRY[name]
