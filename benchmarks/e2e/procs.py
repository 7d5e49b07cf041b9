"""Every process a run starts, stopped by pid (workers before services)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e.config import REPO
from stream_app.devkit.stack import LocalService


class Processes:
    """Everything this run started; all stopped by pid, workers before services."""

    def __init__(self) -> None:
        self.children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self.services: list[LocalService] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Any:
        """Start ``argv`` in the repository, with the repository first on its path (a
        script's own directory comes first otherwise)."""
        paths = [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
        env = {**env, "PYTHONPATH": os.pathsep.join(paths)}
        with open(log, "ab") as fp:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=fp, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=REPO,
            )  # fmt: skip
        self.children[proc.pid] = (name, proc)
        return proc

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 20.0
    ) -> None:
        """Signal one child (SIGTERM by default), SIGKILL it after ``wait`` s; reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        self._reap(proc, wait)

    def stop_many(self, procs: Sequence[subprocess.Popen[bytes]], wait: float = 20.0) -> None:
        """SIGTERM all at once (workers shut down in parallel), then reap each one.

        One SIGTERM only: a second one makes faust skip its clean shutdown."""
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            self._reap(proc, wait)

    def _reap(self, proc: subprocess.Popen[bytes], wait: float) -> None:
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.children.pop(proc.pid, None)

    def stop_all(self) -> None:
        self.stop_many([proc for _, proc in list(self.children.values())])
        for svc in reversed(self.services):
            svc.stop()
        self.services.clear()
