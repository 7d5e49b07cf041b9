"""A headless Chromium driven over the DevTools protocol, for the dashboard's browser test.

Debian's ``chromium`` (``scripts/bootstrap --browser`` installs it; ``make test`` runs
that), started on a throw-away profile with ``--remote-debugging-port=0``: the port it
picked is in ``<profile>/DevToolsActivePort``. The protocol is JSON over a WebSocket
(aiohttp's client, which faust already depends on). Stopped by pid.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

#: The flags of a quiet, self-contained headless run (no sync, updates, QUIC or first-run UI).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


def chromium_binary() -> str | None:
    """Debian's ``chromium`` (or ``chromium-browser``) on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One Chromium process and a DevTools session on its first page."""

    def __init__(self, binary: str, workdir: Path, *, timeout: float = 30.0) -> None:
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous run's
        self.log_path = workdir / "chromium.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # DevTools events received so far
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            port = self._port(timeout)
            self.loop.run_until_complete(self._connect(port, timeout))
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if marker.exists() and (text := marker.read_text().split()):
                return int(text[0])
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start; log:\n{self.log_tail()}")
            time.sleep(0.05)

    async def _connect(self, port: int, timeout: float) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as reply:
            targets = await reply.json()
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError(f"no page target: {targets}")
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self._send("Page.enable")
        await self._send("Runtime.enable")

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    async def _send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        call = next(self.ids)
        await self.ws.send_json({"id": call, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == call:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)  # an event: kept for whoever waits for it

    async def _wait_event(self, method: str, timeout: float) -> None:
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no {method} within {timeout:g}s")
            with contextlib.suppress(TimeoutError):
                self.events.append(await asyncio.wait_for(self.ws.receive_json(), remaining))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result."""
        return self.loop.run_until_complete(self._send(method, **params))

    def navigate(self, url: str) -> None:
        """Open ``url``; returns once its ``load`` event fired."""
        self.events = []
        self.call("Page.navigate", url=url)
        self.loop.run_until_complete(self._wait_event("Page.loadEventFired", 30.0))

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The JSON value of ``expression`` in the page (a promise's, with await_promise)."""
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 30.0) -> Any:
        """Poll ``expression`` in the page until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression}: still {value!r} after {timeout:g}s")
            time.sleep(0.05)  # poll the page's state
        return value

    def console_errors(self) -> list[str]:
        """Exceptions thrown in the page and console errors, seen so far."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(str(e["params"]["exceptionDetails"]))
            elif e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append(str(e["params"]["args"]))
        return out

    def screenshot(self, path: Path, *, width: int = 1440) -> Path:
        """A PNG of the whole page at ``width`` CSS pixels."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        """Close the session and stop Chromium (SIGTERM, then SIGKILL), by pid."""
        with contextlib.suppress(Exception):
            if self.ws is not None:
                self.loop.run_until_complete(self.ws.close())
            if self.session is not None:
                self.loop.run_until_complete(self.session.close())
        self.loop.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
