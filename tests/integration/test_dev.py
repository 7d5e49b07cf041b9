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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.workers import REPO, clean_env, finish

pytestmark = pytest.mark.integration

STARTED = re.compile(
    r"started: broker pid (\d+) \(.*?\), redis pid (\d+) \(.*?\), worker pid (\d+) ", re.DOTALL
)
DASHBOARD = re.compile(r"^dashboard: (http://127\.0\.0\.1:(\d+))/dashboard#token=(\S+)$", re.M)
ENV_FILE = re.compile(r"^CLI: +source (\S+)", re.M)


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


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


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

    # what dev prints reaches its worker: the dashboard, the API with the token, /metrics
    base, _port, token = dev.wait_for("dashboard URL", DASHBOARD, timeout=10).groups()
    assert get(f"{base}/dashboard")[0] == 200
    assert get(f"{base}/v1/tiers")[0] == 401
    status, body = get(f"{base}/v1/tiers", token=token)
    assert status == 200 and b'"tiers"' in body
    assert get(f"{base}/metrics")[0] == 200
    # ... and the CLI's variables, in a file to source
    env_file = Path(dev.wait_for("CLI line", ENV_FILE, timeout=10).group(1))
    exports = dict(
        re.findall(r"^export (ENGAGEMENT_\w+)='([^']*)'$", env_file.read_text(), flags=re.M)
    )
    assert exports.keys() == {
        "ENGAGEMENT_KAFKA_BROKERS", "ENGAGEMENT_REDIS_URL", "ENGAGEMENT_API_TOKENS"
    }  # fmt: skip
    assert exports["ENGAGEMENT_API_TOKENS"] == token

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
    assert "Task was destroyed" not in output  # every task stopped before the loop closed
    assert "stopped: worker, redis and broker" in output

    deadline = time.monotonic() + 10
    while not all(gone(p) for p in dev.pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # polls the condition; the children are reaped already in practice
    alive = [p for p in dev.pids if not gone(p)]
    assert not alive, f"still running after dev exited: {alive}"
