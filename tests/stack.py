"""A whole flowbook stack under a real supervisord, in a temporary directory, for e2e tests.

The supervisord configuration is the project's own ``deploy/supervisord.conf`` with its run
directory moved into the test's temporary directory, and the program list generated from the
test's config by ``services.supervise.write`` — the same code ``make demo`` runs.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from common.config import Config, load
from services.supervise import supervisord_conf, write
from tests.procs import Proc, wait_until

SUPERVISORCTL = str(Path(sys.executable).with_name("supervisorctl"))
SUPERVISORD = str(Path(sys.executable).with_name("supervisord"))


class SupervisedStack:
    def __init__(self, config_path: Path, run_dir: Path) -> None:
        self.cfg: Config = load(config_path)
        self.run_dir = run_dir
        write(self.cfg, run_dir)
        self.conf = supervisord_conf(run_dir)
        self.proc = Proc("supervisord", ["-n", "-c", str(self.conf)], run_dir, exe=SUPERVISORD)

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [SUPERVISORCTL, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60
        )
        return out.stdout + out.stderr

    def pid(self, program: str) -> int:
        text = self.ctl("pid", program).strip()
        return int(text) if text.isdigit() else 0

    def status(self) -> dict[str, str]:
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
        return out

    def wait_running(self, timeout: float = 60) -> None:
        def all_running() -> bool:
            st = self.status()
            return bool(st) and all(v == "RUNNING" for v in st.values())

        wait_until(all_running, timeout, 0.2, what="every program RUNNING under supervisord")

    def log(self, program: str) -> str:
        path = self.run_dir / "log" / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.ctl("shutdown")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.popen.wait(30)
        self.proc.stop()
