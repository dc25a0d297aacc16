"""Headless Chromium driven over the DevTools protocol on a pipe: load a page, inspect it, screenshot it.

No driver package and no network: Chromium is started with ``--remote-debugging-pipe`` and reads
DevTools commands from file descriptor 3 and writes replies and events to descriptor 4, one JSON
message per NUL-terminated record. Used by the report test and, from the command line, to
screenshot a report::

    python tests/chromium.py report.html screenshot.png
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

# Headless, offline, and quiet: without the networking flags Chromium's background connections
# are refused by a closed network and logged as errors.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--disable-dev-shm-usage", "--remote-debugging-pipe",
]


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class ChromiumError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium with one page, controlled through DevTools protocol commands."""

    def __init__(self, binary: Optional[str] = None, width: int = 1600, height: int = 900, timeout: float = 60.0):
        binary = binary or find_chromium()
        if binary is None:
            raise ChromiumError("chromium not found on PATH")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="wsss-chromium-")
        # fd 3: commands to Chromium; fd 4: Chromium's replies. The child's pipe ends are first moved
        # above 9 (close-on-exec), so that neither is itself 3 or 4 when they are copied there.
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = (self._move_high(fd) for fd in (to_chrome_r, from_chrome_w))
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                   "about:blank"]
        def pipes_to_3_and_4():  # runs in the child between fork and exec
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        # stderr goes to a file: an unread pipe would fill up and stall a chatty browser
        self._stderr_path = Path(self.profile) / "stderr.log"
        with open(self._stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(command, preexec_fn=pipes_to_3_and_4, close_fds=False,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: Optional[str] = None
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    @staticmethod
    def _move_high(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    # --- protocol ---------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], remaining)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise ChromiumError(f"Chromium exited: {self.stderr_tail()}")
                self._buffer += chunk
        record, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(record)

    def send(self, method: str, params: Optional[dict] = None, session: bool = True) -> dict:
        """Send a command and wait for its result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        """The first event ``method`` (already received or coming)."""
        for event in self.events:
            if event["method"] == method:
                return event
        deadline = time.monotonic() + self.timeout
        while True:
            event = self._read_message(deadline)
            if "method" in event:
                self.events.append(event)
                if event["method"] == method:
                    return event

    # --- page ---------------------------------------------------------------------------------------
    def open(self, path: Path) -> None:
        """Load a local file and wait for its load event (every image decoded or failed)."""
        self.events.clear()
        result = self.send("Page.navigate", {"url": Path(path).resolve().as_uri()})
        if result.get("errorText"):
            raise ChromiumError(f"navigation failed: {result['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise ChromiumError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Errors the page logged: console.error, uncaught exceptions, failed loads (Log domain)."""
        errors = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif event["method"] == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        return errors

    def requested_urls(self) -> list[str]:
        """Every URL the page asked the network stack for (data: URIs are not requests)."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, full_page: bool = True) -> tuple[int, int]:
        """Save a PNG of the page (the whole scroll height when ``full_page``); returns its CSS size."""
        width, height = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        params = {"format": "png"}
        if full_page:
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return width, height

    def stderr_tail(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                try:
                    self.send("Browser.close", session=False)
                except (ChromiumError, OSError):
                    pass
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/chromium.py PAGE.html SCREENSHOT.png")
    with Chromium() as browser:
        browser.open(Path(sys.argv[1]))
        size = browser.screenshot(Path(sys.argv[2]))
        print(f"{sys.argv[2]}: {size[0]}x{size[1]} CSS px; console errors: {browser.console_errors() or 'none'}")
