"""Exchanges on loopback: a shared random-walk market served in each venue's exact dialect.

Run with ``python -m services.simulator --config deploy/demo.toml`` (see ``__main__``).
DESIGN.md section 7.
"""
