"""Profile a running process with py-spy and turn its collapsed stacks into a short text report:
where the CPU goes, by function (self and inclusive) and by the busiest call paths. Sampling
uses ``--native`` (C frames too), which pauses the process for each sample, so the benchmark
profiles after its measurements.

Native frames matter here: under uvloop the event loop, libzmq and the socket writes are C, and
without them py-spy charges their time, and the time the loop waits in ``epoll_pwait``, to the
last Python frame (``Runner.run``). With them a sample whose leaf is ``epoll_pwait`` is the
process waiting, not working, and is left out.

``python -m tests.bench.profile --pid N --seconds 15 [--out FILE]`` does the same by hand.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from common.sched import set_fifo

RATE_HZ = 250
# leaf frames of a thread waiting for I/O (Python selectors, or epoll in uvloop's C code)
IDLE_LEAVES = (
    "EpollSelector.select",
    "select (selectors",
    "KqueueSelector.select",
    "epoll_pwait (",
    "epoll_wait (",
)
# C frames of the interpreter and of uvloop (loop.c, core.c, object.h): plumbing, not findings
_PLUMBING = re.compile(r"\((?:[^()]*/)?[\w.-]+\.[ch]\)$")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
    return found


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path


def _func(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m.group('func')} ({_short(m.group('file'))})"


def summarize(raw: Path, seconds: float, title: str, rate: int = RATE_HZ) -> dict[str, Any]:
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [_func(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            if not _PLUMBING.search(f):
                incl_c[f] += count
        # the path from the event loop's callback down, without asyncio/runner/C-loop frames
        tail = [
            f
            for f in frames
            if "asyncio" not in f and "<module>" not in f and not _PLUMBING.search(f)
        ]
        paths[" > ".join(tail[-4:])] += count
    expected = rate * seconds
    top_self = (
        [(f, n, round(100.0 * n / total, 1)) for f, n in self_c.most_common(30)] if total else []
    )
    top_incl = (
        [(f, n, round(100.0 * n / total, 1)) for f, n in incl_c.most_common(40)] if total else []
    )
    lines = [
        f"py-spy profile: {title}",
        f"{total} samples with the process running or runnable out of ~{expected:.0f} taken at"
        f" {rate} Hz over {seconds:.0f}s ({idle} more waiting in epoll, left out; a runnable"
        " process that the scheduler does not run is counted: on a loaded host this is more"
        " than its CPU%)",
        "",
        "Self time (the function itself was running), % of the samples above:",
    ]
    lines += [f"  {pct:5.1f}%  {f}" for f, _, pct in top_self]
    lines += ["", "Inclusive time (the function or what it called), % of the samples above:"]
    lines += [f"  {pct:5.1f}%  {f}" for f, _, pct in top_incl]
    lines += ["", "Busiest call paths (last four frames, asyncio plumbing left out):"]
    for p, n in paths.most_common(20):
        lines.append(f"  {100.0 * n / total:5.1f}%  {p}")
    text = "\n".join(lines) + "\n"
    return {
        "text": text,
        "samples": total,
        "top_self": [{"function": f, "percent": pct} for f, _, pct in top_self],
        "top_inclusive": [{"function": f, "percent": pct} for f, _, pct in top_incl],
        "text_path_hint": str(raw),
    }


def record(
    pid: int, seconds: float, raw: Path, rate: int = RATE_HZ, nice: int = 0, realtime: int = 0
) -> None:
    """``realtime``: the profiled process runs SCHED_FIFO at this priority; py-spy then runs one
    above it, or it would only get the CPU (and take its samples) when the process sleeps."""
    cmd = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--native",
        "--format",
        "raw",
        "--output",
        str(raw),
    ]

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if realtime:
        try:
            set_fifo(proc.pid, realtime + 1)
        except OSError as exc:  # py-spy still samples, only less evenly
            print(f"py-spy stays at normal priority: {exc}", file=sys.stderr)
    if nice:  # the same scheduling weight as the benchmarked stack (see run.py --autogroup-nice)
        from tests.bench.stack import set_autogroup_nice

        set_autogroup_nice(proc.pid, nice)
    try:
        _, err = proc.communicate(timeout=3 * seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("py-spy did not finish in time") from None
    if proc.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {err.strip()[-500:]}")


def record_and_summarize(
    pid: int, seconds: float, raw: Path, title: str, nice: int = 0, realtime: int = 0
) -> dict[str, Any]:
    record(pid, seconds, raw, nice=nice, realtime=realtime)
    return summarize(raw, seconds, title)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", help="text report (default: stdout)")
    args = ap.parse_args(argv)
    raw = Path(f"/tmp/flowbook-profile-{args.pid}.raw")
    summary = record_and_summarize(args.pid, args.seconds, raw, f"pid {args.pid}")
    if args.out:
        Path(args.out).write_text(summary["text"])
    else:
        print(summary["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
