"""CPU time of processes and of the machine, sampled in a thread; the machine's load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    with open("/proc/stat") as fp:
        values = [int(v) for v in fp.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


class Sampler:
    """Samples the CPU time of watched pids and of the machine every ``interval`` s."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.watched: dict[str, int] = {}
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.machine: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.watched[name] = pid
            self.series[name] = []
        self.sample()

    def unwatch(self, name: str) -> None:
        self.sample()
        with self._lock:
            self.watched.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            now = time.time()
            self.machine.append((now, machine_busy_s()))
            for name, pid in self.watched.items():
                cpu = proc_cpu_s(pid)
                if cpu is not None:
                    self.series[name].append((now, cpu))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def window(self, t0: float, t1: float, names: Sequence[str]) -> dict[str, float]:
        """Average cores used over [t0, t1] by each name, the machine, and everything else."""
        out: dict[str, float] = {}
        with self._lock:
            for name in names:
                rate = _rate(self.series.get(name, []), t0, t1)
                if rate is not None:
                    out[name] = rate
            machine = _rate(self.machine, t0, t1)
        if machine is not None:
            out["machine"] = machine
            out["others"] = max(0.0, machine - sum(v for k, v in out.items() if k != "machine"))
        return out


def _at(series: list[tuple[float, float]], t: float) -> float | None:
    """Linear interpolation of a cumulative series at ``t`` (None outside it)."""
    if not series or t < series[0][0] - 0.2 or t > series[-1][0] + 0.2:
        return None
    prev = series[0]
    for point in series:
        if point[0] >= t:
            if point[0] == prev[0]:
                return point[1]
            f = (t - prev[0]) / (point[0] - prev[0])
            return prev[1] + f * (point[1] - prev[1])
        prev = point
    return series[-1][1]


def _rate(series: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    a, b = _at(series, t0), _at(series, t1)
    if a is None or b is None or t1 <= t0:
        return None
    return (b - a) / (t1 - t0)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def baseline_load(seconds: float = 2.0) -> float:
    """Cores the machine keeps busy before this run starts anything."""
    a, t = machine_busy_s(), time.time()
    time.sleep(seconds)
    return (machine_busy_s() - a) / (time.time() - t)


def scoring_build() -> str:
    """``mypyc`` or ``pure``: the scoring core the workers import (they run in REPO)."""
    from e2e.config import REPO

    code = "import scoring.state; print(scoring.state.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    return "pure" if where.endswith(".py") else "mypyc"


def machine_info() -> dict[str, Any]:
    import aiokafka
    import faust

    from e2e.quix import version as quix_version

    redis_v = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "faust": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "redis_server": redis_v,
        "quixstreams": quix_version(),
        "scoring_build": scoring_build(),
        "loadavg_start": loadavg(),
    }
