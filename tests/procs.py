"""Helpers for tests that start real processes on loopback: free ports, configs, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BASES = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK"]


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this test process handed out before (the kernel may
    offer a just-closed port again, and a config needs them all distinct)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_until(
    cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the system is up
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or cond}: last error {last_exc!r}"
    )


async def until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """``wait_until`` inside an event loop: poll ``cond`` without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.02)


def venue_section(
    name: str,
    *,
    sim_port: int,
    quote: str = "USDT",
    bases: list[str] | None = None,
    ws_path: str = "/stream",
    extra: str = "",
) -> str:
    pub, ctl = free_port(), free_port()
    bases_s = ", ".join(f'"{b}"' for b in (bases or BASES))
    return f"""
[venues.{name}]
enabled = true
pub = "tcp://127.0.0.1:{pub}"
control = "tcp://127.0.0.1:{ctl}"
ws_url = "ws://127.0.0.1:{sim_port}{ws_path}"
rest_url = "http://127.0.0.1:{sim_port}"
sim_port = {sim_port}
quote = "{quote}"
bases = [{bases_s}]
{extra}
"""


def write_config(
    tmp: Path, venues: str, *, rate: int = 50, extra: str = "", book_extra: str = ""
) -> Path:
    """A complete config on free ports: simulator, book builder, gateway, and ``venues``
    (``extra`` goes into ``[gateway]``, ``book_extra`` into ``[book]``)."""
    text = f"""
[simulator]
enabled = true
host = "127.0.0.1"
control_port = {free_port()}
rate = {rate}
trade_ratio = 0.3
seed = 11

[book]
pub = "tcp://127.0.0.1:{free_port()}"
control = "tcp://127.0.0.1:{free_port()}"
depth = 50
depth_interval_ms = 20
stale_after_s = 3.0
{book_extra}

[gateway]
host = "127.0.0.1"
port = {free_port()}
{extra}
{venues}
"""
    path = tmp / "flowbook.toml"
    path.write_text(text)
    return path


class Proc:
    """A child process of the test, its output in a log file, killed at the end."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        exe: str = PY,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            [exe, *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Callable[..., Proc]]:
    """``with processes(tmp) as start: start("sim", ["-m", "services.simulator", ...])``;
    every process is stopped on exit, and its log printed if the test failed."""
    started: list[Proc] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, args, log_dir, env)
        started.append(p)
        return p

    try:
        yield start
    except BaseException:
        for p in started:
            print(f"----- {p.name} log (tail) -----\n{p.log_text()[-4000:]}")
        raise
    finally:
        for p in reversed(started):
            p.stop()
