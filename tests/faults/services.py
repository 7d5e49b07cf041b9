"""Control of the services a scenario runs: worker subprocesses (relaunchable, signalled,
their memory sampled, their logs read)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class WorkerProc:
    """One worker subprocess (relaunchable with the same environment and log file)."""

    def __init__(self, env: dict[str, str], name: str, workdir: Path) -> None:
        self.name = name
        self.env = {**env, "ENGAGEMENT_DATA_DIR": str(workdir / f"faust-{name}")}
        self.log_path = workdir / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.launches = 0
        self.should_run = False

    def launch(self) -> None:
        self.launches += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== harness: launch {self.launches} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "worker"],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.should_run = True

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.should_run = False
        self.send(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (after SIGCONT, in case it is stopped), SIGKILL after ``timeout``."""
        self.should_run = False
        if self.process is None:
            return
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_kib(self) -> int | None:
        """VmRSS from /proc (None when the process is gone)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, AssertionError):
            return None
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) if m else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_text()[-limit:]


class RssSampler:
    """Samples the workers' VmRSS every ``interval`` seconds in a thread."""

    def __init__(self, workers: Sequence[WorkerProc], interval: float = 0.2) -> None:
        self.workers = workers
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for w in self.workers:
                if w.alive:
                    total += w.rss_kib() or 0
            if total:
                self.samples.append((time.monotonic(), total))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def max_between(self, t0: float, t1: float) -> int:
        return max((kib for t, kib in self.samples if t0 <= t <= t1), default=0)


def retries(w: WorkerProc) -> int:
    return len(re.findall(r"waits [0-9.]+s to retry", w.log_text()))


def lost_writes(w: WorkerProc) -> int:
    return sum(int(n) for n in re.findall(r"fenced writes lost for (\d+)", w.log_text()))
