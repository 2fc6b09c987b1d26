"""Run ``smartplexd demo`` as a real process for tests: wait for its banner, stop it with Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


class DemoProcess:
    def __init__(self, folder: Path, *args: str) -> None:
        env = {**os.environ, "SMARTPLEXD_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartplexd", "demo", "--dir", str(folder), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._banner = threading.Event()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True).start()
        if not self._banner.wait(60):
            self.stop()
            raise AssertionError(f"no banner from smartplexd demo:\n{''.join(self.out)}\n{''.join(self.err)}")
        text = "".join(self.out)
        self.url = re.search(r"Status page: (\S+)", text).group(1)  # type: ignore[union-attr]
        self.admin_token = re.search(r"admin token (\S+)", text).group(1)  # type: ignore[union-attr]
        self.config = folder / "config.yaml"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        """The banner comes before the daemon listens: wait for /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.err)
            try:
                if httpx.get(self.url + "healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the demo daemon never answered /healthz:\n{''.join(self.err)}")

    def _read(self, stream, sink: list[str], banner: bool) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line)
            if banner and line.startswith("Status page:"):
                self._banner.set()

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
