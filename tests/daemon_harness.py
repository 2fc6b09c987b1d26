"""A real ``smartplexd run`` process on 127.0.0.1 for the daemon, webhook, API and OpenAPI tests.

:func:`start_daemon` writes a config into a folder, starts ``python -m smartplexd -c config.yaml run`` as a
subprocess (stderr to ``daemon.log``), waits for ``/healthz`` and returns a :class:`DaemonProcess`. Tests
talk to it over HTTP and read its database with their own sqlite3 connection, exactly as an operator would.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ADMIN = "admin-token-6f1e0c2b9a8d"
ADMIN2 = "admin2-token-77aa01bc54"
VIEWER = "viewer-token-3c5d7e9f1a"
REQUESTER = "requester-token-0b2d4f6a8c"
PLEX_TOKEN = "daemon-test-plex-token"
PLEX_HOOK = "plex-hook-secret-9d8c7b6a"
SONARR_PASSWORD = "sonarr-hook-password-1"
RADARR_PASSWORD = "radarr-hook-password-1"
OVERSEERR_SECRET = "overseerr-hook-secret-1"
TAUTULLI_SECRET = "tautulli-hook-secret-1"
HMAC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks test vector's secret
HMAC_SECRET_OLD = "whsec_c2VjcmV0LWJlaW5nLXJvdGF0ZWQtb3V0LTEyMzQ1"
ALLOWED_ORIGIN = "https://dash.example.net"

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = Path(__file__).resolve().parent / "contracts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(port: int, plex_url: str, *, extra: str = "", rate_limit: int = 10, log_level: str = "INFO") -> str:
    """A complete config with one Plex server, every webhook sender and four API tokens."""
    return f"""\
server:
  listen: "127.0.0.1:{port}"
  cors_origins: ["{ALLOWED_ORIGIN}"]
  sync_rate_limit_per_hour: {rate_limit}
  tokens:
    - {{name: admin, role: admin, token: {ADMIN}}}
    - {{name: admin2, role: admin, token: {ADMIN2}}}
    - {{name: viewer, role: viewer, token: {VIEWER}}}
    - {{name: requester, role: requester, token: {REQUESTER}}}
database: ./smartplexd.db
log_level: {log_level}
plex:
  servers:
    - {{name: home, url: "{plex_url}", token: {PLEX_TOKEN}, timeout: 5}}
webhooks:
  plex: {{auth: url_token, secret: {PLEX_HOOK}}}
  sonarr: {{auth: basic, username: sonarr, password: {SONARR_PASSWORD}}}
  radarr: {{auth: basic, username: radarr, password: {RADARR_PASSWORD}}}
  overseerr: {{auth: header, header: Authorization, secret: {OVERSEERR_SECRET}}}
  tautulli: {{auth: header, header: X-Webhook-Secret, secret: {TAUTULLI_SECRET}}}
  generic: {{auth: hmac, secret: {HMAC_SECRET}, secrets: [{HMAC_SECRET_OLD}]}}
deletion: {{enabled: false}}
rules: [./rules]
{extra}"""


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def db_path(self) -> Path:
        return self.folder / "smartplexd.db"

    @property
    def log_path(self) -> Path:
        return self.folder / "daemon.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in the daemon log:\n{self.log_text()[-3000:]}")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.db_path, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()

    def wait_for(self, sql: str, params: Any = (), timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll ``sql`` until it returns rows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query(sql, params)
            if rows:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"no rows for {sql} {params} after {timeout}s;\nlog:\n{self.log_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"daemon did not stop after SIGTERM;\nlog:\n{self.log_text()[-3000:]}") from None


def start_daemon(folder: Path, plex_url: str, *, port: int | None = None, **config_kw: Any) -> DaemonProcess:
    """Write ``folder/config.yaml`` and start the daemon on it; returns once ``/healthz`` answers 200."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules").mkdir(exist_ok=True)
    port = port or free_port()
    (folder / "config.yaml").write_text(config_text(port, plex_url, **config_kw))
    return launch(folder, port)


def launch(folder: Path, port: int) -> DaemonProcess:
    """Start the daemon on an existing ``folder/config.yaml``."""
    log = open(folder / "daemon.log", "ab")  # noqa: SIM115 - the child process owns it from here
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SMARTPLEXD_LOG_LEVEL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartplexd", "-c", str(folder / "config.yaml"), "run"],
        cwd=REPO,
        stdout=log,
        stderr=log,
        env=env,
    )
    log.close()
    daemon = DaemonProcess(proc, folder, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{daemon.log_text()}")
        try:
            if httpx.get(f"{daemon.url}/healthz", timeout=1).status_code == 200:
                return daemon
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise AssertionError(f"daemon did not answer /healthz:\n{daemon.log_text()}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
