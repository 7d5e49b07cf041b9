"""The ``quix`` phase: the Quix Streams peer (``benchmarks/quix_peer.py``) over the input
topic, its events/s and CPU, with the processes it starts tracked like every other."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import quix_peer  # (benchmarks/, next to ceilings.py: the process and its orchestration)

from e2e.bench import Bench
from e2e.cpu import loadavg


async def quix(bench: Bench) -> dict[str, Any]:
    """Run the peer until it has processed the whole input topic; events/s and CPU."""

    def spawn(argv: list[str], env: dict[str, str], log: Path) -> Any:
        proc = bench.procs.spawn("quix", argv, env, log)
        bench.sampler.watch("quix", proc.pid)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        bench.procs.stop(proc)
        bench.sampler.unwatch("quix")

    out = await quix_peer.measure(
        bench.bootstrap, bench.input_topic, bench.expect, workdir=bench.workdir,
        partitions=bench.cfg.partitions, spawn=spawn, stop=stop,
    )  # fmt: skip
    cpu = bench.sampler.window(*out["window"], bench.cpu_names(["quix"]))
    cpu["quix"] = out.pop("cpu_cores")  # the process's own count: exact over any window
    if "machine" in cpu:
        ours = sum(x for k, x in cpu.items() if k not in ("machine", "others"))
        cpu["others"] = max(0.0, cpu["machine"] - ours)
    return out | {"cpu_cores": cpu, "loadavg_end": loadavg()}


def version() -> str | None:
    """The installed quixstreams (None: not installed, the phase fails and the run goes on)."""
    return quix_peer.version()
