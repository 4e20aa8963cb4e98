"""What the measuring processes share: latency histograms per stage, and a line protocol on
stdin/stdout through which the harness marks the start and end of each load step.

A probe reads commands, one per line, on stdin: ``start <label>`` clears its histograms and
starts recording; ``stop`` stops recording and prints one JSON line (its report) on stdout;
``quit`` ends it. Everything else a probe says goes to stderr (its log file).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from common.metrics import LatencyHistogram


class Stages:
    """One HDR histogram (µs) per stage name, plus message counters."""

    def __init__(self) -> None:
        self.hists: dict[str, LatencyHistogram] = {}
        self.counts: dict[str, int] = {}

    def record(self, stage: str, ns: int) -> None:
        h = self.hists.get(stage)
        if h is None:
            h = self.hists[stage] = LatencyHistogram(3)  # read once a step: full precision
        h.record_ns(ns if ns > 0 else 0)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def report(self) -> dict[str, Any]:
        return {
            "latency_us": {k: h.summary() for k, h in sorted(self.hists.items())},
            "counts": dict(sorted(self.counts.items())),
        }

    def reset(self) -> None:
        self.hists.clear()
        self.counts.clear()


class Commands:
    """Non-blocking reader of the harness's commands on stdin (line protocol above)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self._buf = b""
        self.eof = False

    def read(self) -> list[str]:
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not chunk:
            self.eof = True
            return ["quit"]
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [ln.decode().strip() for ln in lines if ln.strip()]


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


class ProbeProcess:
    """The harness's handle on one probe process."""

    def __init__(self, name: str, args: list[str], log_dir: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self._out = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def read_reply(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                raise RuntimeError(f"probe {self.name} gave no report; see {self.log_path}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"probe {self.name} exited; see {self.log_path}")
                self._out += chunk
        line, _, self._out = self._out.partition(b"\n")
        return orjson.loads(line)

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """The first line a probe prints is ``{"ready": ...}`` once it is connected."""
        return self.read_reply(timeout)

    def start(self, label: str) -> None:
        self.send(f"start {label}")

    def lag(self) -> dict[str, Any]:
        self.send("lag")
        return self.read_reply(60)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        self.send("stop")
        return self.read_reply(timeout)

    def close(self) -> None:
        if self.alive():
            try:
                self.send("quit")
                self.popen.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def run_commands(
    cmds: Commands,
    on_start: Callable[[str], None],
    on_stop: Callable[[], dict[str, Any]],
    on_lag: Callable[[], dict[str, Any]] | None = None,
) -> bool:
    """Handle pending commands; returns False on ``quit``."""
    for cmd in cmds.read():
        verb, _, arg = cmd.partition(" ")
        if verb == "start":
            on_start(arg)
        elif verb == "stop":
            reply(on_stop())
        elif verb == "lag" and on_lag is not None:
            reply(on_lag())
        elif verb == "quit":
            return False
    return True
