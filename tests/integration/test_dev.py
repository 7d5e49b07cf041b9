"""``engagement-scorer dev``: starts its own broker, Redis and worker, shows segment changes
from simulated traffic, and stops everything it started on Ctrl-C (SIGINT)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.workers import REPO, clean_env, finish

pytestmark = pytest.mark.integration

STARTED = re.compile(
    r"started: broker pid (\d+) \(.*?\), redis pid (\d+) \(.*?\), worker pid (\d+) ", re.DOTALL
)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Dev:
    """The ``dev`` subprocess, its output file and the pids it reports."""

    def __init__(self, workdir: Path) -> None:
        self.out = workdir / "dev.out"
        env = clean_env()
        env.update({"COLUMNS": "400", "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)})
        args = ["--plain", "--customers", "60", "--history-days", "30", "--rate", "20"]
        # started with SIGINT ignored, as a background job of a script starts it (CI):
        # an ignored signal stays ignored across exec, and Ctrl-C must still stop dev
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        with open(self.out, "wb") as out, contextlib.ExitStack() as restore:
            restore.callback(signal.signal, signal.SIGINT, previous)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "dev", *args],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pids: list[int] = []

    def text(self) -> str:
        return self.out.read_text("utf-8", "replace")

    def wait_for(self, what: str, condition: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = condition.search(self.text())
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"no {what} within {timeout:g}s (exit {self.process.poll()}); "
                    f"output:\n{self.text()[-4000:]}",
                    pytrace=False,
                )
            time.sleep(0.1)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    d = Dev(tmp_path)
    try:
        yield d
    finally:  # a failed test still stops everything: dev itself first, then what it reported
        if d.process.poll() is None:
            d.process.send_signal(signal.SIGTERM)
            finish(d.process, 30)
        for pid in d.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_dev_shows_changes_and_stops_cleanly_on_ctrl_c(dev: Dev) -> None:
    started = dev.wait_for("started line", STARTED, timeout=60)
    dev.pids = [int(p) for p in started.groups()]
    assert len(set(dev.pids)) == 3 and not any(gone(p) for p in dev.pids)
    dev.wait_for("segment change", re.compile(r"^change: .+", re.MULTILINE), timeout=60)

    dev.process.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    # dev SIGKILLs a worker that has not stopped 20 s after its SIGTERM: stopping well
    # within that shows the worker shut down by itself
    try:
        code = dev.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dev still running 15s after SIGINT; output:\n{dev.text()[-3000:]}")
    output = dev.text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert "stopped: worker, redis and broker" in output

    deadline = time.monotonic() + 10
    while not all(gone(p) for p in dev.pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # polls the condition; the children are reaped already in practice
    alive = [p for p in dev.pids if not gone(p)]
    assert not alive, f"still running after dev exited: {alive}"
