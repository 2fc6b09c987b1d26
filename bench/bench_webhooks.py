"""Benchmark: sustained verified webhooks per second into a real daemon process, and its idle memory.

A ``smartplexd run`` process listens on 127.0.0.1 with an ``hmac`` (Standard Webhooks) source. The client
(this process, aiohttp, many keep-alive connections) sends ``REQUESTS`` distinct signed webhooks; each
must be answered 202, which the daemon only does after the row is committed with fsync (group commit).
Signing happens before the clock starts, so the number measures the daemon: reading, verifying the
HMAC, storing durably, answering. Afterwards the database must hold every one of them exactly once.

Idle RSS is read from ``/proc/<pid>/status`` after start-up (scheduler, worker threads, routes loaded)
and again after the burst has been processed.

    python bench/bench_webhooks.py             # run, check the target, write docs/benchmarks.md
    python bench/bench_webhooks.py --no-write --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TARGET_PER_S = 2_000
REQUESTS = 20_000
CONCURRENCY = 64
TIME_LIMIT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_daemon(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (folder / "rules").mkdir()
    (folder / "config.yaml").write_text(
        f"""\
server: {{listen: "127.0.0.1:{port}"}}
database: ./smartplexd.db
log_level: WARNING
webhooks:
  bench: {{auth: hmac, secret: {SECRET}}}
rules: [./rules]
"""
    )
    log = open(folder / "daemon.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartplexd", "-c", str(folder / "config.yaml"), "run"],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"daemon did not start:\n{(folder / 'daemon.log').read_text()}")


def signed_requests(n: int) -> list[tuple[bytes, dict[str, str]]]:
    from standardwebhooks import Webhook

    wh = Webhook(SECRET)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        msg_id = f"msg_{uuid.uuid4().hex}"
        body = json.dumps({"type": "bench.event", "timestamp": now.isoformat(), "data": {"i": i}})
        out.append(
            (
                body.encode(),
                {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": wh.sign(msg_id, now, body),
                    "Content-Type": "application/json",
                },
            )
        )
    return out


async def fire(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> tuple[float, dict]:
    """Send every request over ``concurrency`` keep-alive connections; returns (seconds, status counts)."""
    codes: dict[int, int] = {}
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=TIME_LIMIT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for body, headers in queue:
                async with session.post(f"{url}/hooks/bench", data=body, headers=headers) as r:
                    await r.read()
                    codes[r.status] = codes.get(r.status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), TIME_LIMIT_S)
        return time.perf_counter() - t0, codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        folder = Path(tmp)
        proc, url = start_daemon(folder)
        try:
            time.sleep(2.0)  # let start-up work (migrations, scheduler) settle
            idle_start = rss_kib(proc.pid)
            requests = signed_requests(args.requests)
            warm = signed_requests(200)
            asyncio.run(fire(url, warm, args.concurrency))  # connections and code paths warm
            seconds, codes = asyncio.run(fire(url, requests, args.concurrency))
            rate = args.requests / seconds
            ids = [h["webhook-id"] for _, h in requests]
            conn = sqlite3.connect(folder / "smartplexd.db", isolation_level=None)
            conn.execute("CREATE TEMP TABLE sent (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT INTO sent VALUES (?)", [(i,) for i in ids])
            stored = conn.execute(
                "SELECT COUNT(*) FROM webhook_events w JOIN sent s ON s.id = w.event_id WHERE w.source = 'bench'"
            ).fetchone()[0]
            # Wait for the worker to process the burst, then measure memory at rest again.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                left = conn.execute(
                    "SELECT COUNT(*) FROM webhook_events WHERE status IN ('received', 'retry')"
                ).fetchone()[0]
                if not left:
                    break
                time.sleep(0.5)
            processing_s = time.monotonic() - (deadline - 120)
            conn.close()
            time.sleep(1.0)
            idle_after = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            exit_code = proc.wait(60)

    accepted = codes.get(202, 0)
    lost = accepted - stored
    ok = accepted == args.requests and lost == 0 and rate >= TARGET_PER_S and exit_code == 0
    print(f"{args.requests} signed webhooks in {seconds:.2f} s = {rate:,.0f}/s (target {TARGET_PER_S:,}/s)")
    print(f"answers {codes}; stored {stored}; lost {lost}; processed all in {processing_s:.1f} s after the burst")
    print(f"daemon RSS idle {idle_start / 1024:.1f} MiB, after the burst {idle_after / 1024:.1f} MiB; exit {exit_code}")
    if not args.no_write:
        from report import write_section

        write_section(
            "webhooks",
            "Webhooks: verified requests per second and idle memory",
            f"""
`bench/bench_webhooks.py`: one `smartplexd run` process on 127.0.0.1 (log level WARNING, so no access
log); the client sends {args.requests:,} distinct Standard Webhooks requests (HMAC-SHA256 signed before the
clock starts) over {args.concurrency} keep-alive connections from the same machine. A 202 is sent only
after the row is committed with `synchronous=FULL` (group commit: one fsync per batch of concurrent
webhooks).

| measure | result |
|---|---|
| sustained verified webhooks | **{rate:,.0f}/s** ({args.requests:,} in {seconds:.2f} s; target {TARGET_PER_S:,}/s) |
| answers | {", ".join(f"{k}: {v:,}" for k, v in sorted(codes.items()))} |
| stored / lost | {stored:,} / {lost} |
| processing of the whole burst finished | {processing_s:.1f} s after the last answer |
| daemon RSS at rest after start-up | {idle_start / 1024:.1f} MiB |
| daemon RSS at rest after the burst | {idle_after / 1024:.1f} MiB |
| graceful stop (SIGTERM) exit code | {exit_code} |

Client and daemon share the machine's {os.cpu_count()} cores, so the client's own CPU use lowers the number.
""",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
