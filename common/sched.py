"""Real-time scheduling of a flowbook process (``[scheduling] realtime_priority``).

On a small host the pipeline shares the CPUs with everything else, and each bus hop wakes four
threads (the sender, its ZeroMQ I/O thread, the receiver's I/O thread, the receiver). Under the
normal scheduler each wake-up can wait for another process's time slice; under ``SCHED_FIFO`` a
woken flowbook thread runs at once. On the 2-core benchmark host at 2k msgs/s, the services
under FIFO took the p99 end to end from ~9.7 ms to 2.6-3.9 ms with a client at normal priority,
and to ~1.1-1.3 ms with the client under FIFO too (docs/BENCHMARKS.md).

Every service named in ``realtime_services`` gets the same priority: a FIFO thread is not
preempted by another of the same priority, so a stage runs its burst to the end (staggered
priorities measured worse: more preemption, more CPU). The kernel's real-time throttling
(``kernel.sched_rt_runtime_us``, default 95% of each CPU) keeps a runaway process from locking
the host, but a saturated real-time pipeline does take the CPU from everything at normal
priority; the gateway's load follows its clients, so leave it out where they are untrusted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("flowbook")


def _threads(pid: int | str = "self") -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [0] if pid == "self" else []


def set_fifo(pid: int | str, priority: int) -> int:
    """``SCHED_FIFO`` at ``priority`` for every thread of process ``pid`` ("self" for this one);
    returns how many threads. Raises ``OSError`` (``PermissionError`` mostly) where that is not
    allowed."""
    param = os.sched_param(priority)
    done = 0
    for tid in _threads(pid):
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            done += 1
        except ProcessLookupError:
            continue  # the thread ended meanwhile
    return done


def apply_realtime(priority: int, service: str) -> bool:
    """Put every thread of this process (and, by inheritance, those it starts later) under
    ``SCHED_FIFO`` at ``priority``. 0 leaves the normal scheduler. Where the process may not
    (no root, no ``CAP_SYS_NICE``, ``RLIMIT_RTPRIO`` too low), logs why and returns False: the
    service then runs at normal priority, slower but correct."""
    if priority <= 0:
        return False
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_FIFO"):
        log.warning("%s: real-time scheduling asked for, not available on this OS", service)
        return False
    try:
        threads = set_fifo("self", priority)
    except OSError as exc:  # EPERM mostly; EINVAL/ENOSYS in some sandboxes
        log.warning(
            "%s: cannot use real-time scheduling (SCHED_FIFO %d): %s; running at normal priority"
            " (needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least %d)",
            service,
            priority,
            exc,
            priority,
        )
        return False
    log.info(
        "%s: real-time scheduling SCHED_FIFO %d (%d threads; kernel RT limit %s)",
        service,
        priority,
        threads,
        rt_limit(),
    )
    return True


def rt_limit() -> str:
    """The kernel's real-time throttling, e.g. '95% of each CPU'."""
    try:
        runtime = int(Path("/proc/sys/kernel/sched_rt_runtime_us").read_text())
        period = int(Path("/proc/sys/kernel/sched_rt_period_us").read_text())
    except (OSError, ValueError):
        return "unknown"
    if runtime < 0:
        return "none (sched_rt_runtime_us = -1)"
    return f"{100 * runtime / period:.0f}% of each CPU"


def policy_of(pid: int) -> tuple[str, int]:
    """(``fifo``/``rr``/``other``/..., priority) of a process or thread: for tests and status."""
    policy = os.sched_getscheduler(pid)
    names = {os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr", os.SCHED_OTHER: "other"}
    return names.get(policy, str(policy)), os.sched_getparam(pid).sched_priority
