"""The container image, built and run for real with podman (``make image-test``; skipped in ``make test``).

``scripts/image-test.sh`` installs podman and debootstrap when missing, makes a debian:bookworm-slim
equivalent base with debootstrap (cached), then runs this file with ``SMARTPLEXD_IMAGE_TEST=1``. Every
podman command uses a private ``--root``/``--runroot`` under /var/tmp that is removed afterwards, so runs
never see each other's images or containers. The flags are the ones docs/getting-started.md explains
for these machines (vfs storage, cgroupfs, runc, slirp4netns, ulimits at or below the hard limits).

The story: build the image; start it on an empty config folder with PUID/PGID/TZ; it creates config.yaml,
rules/ and the database as that user, answers /healthz and its HEALTHCHECK; SIGTERM stops it cleanly
(exit 0, "stopped" in the log); started again it keeps the config; ``--user`` works too; PUID=0 is refused.
The image size and timings go to docs/benchmarks.md and docs/getting-started.md.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TAG = "localhost/smartplexd:image-test"
BASE_TAG = "docker.io/library/debian:bookworm-slim"
PORT = 8765
MAX_IMAGE_BYTES = 300 * 1000**2
GETTING_STARTED = ROOT / "docs" / "getting-started.md"

pytestmark = pytest.mark.skipif(
    os.environ.get("SMARTPLEXD_IMAGE_TEST") != "1",
    reason="builds and runs the container image with podman (slow): run `make image-test`",
)


@dataclass
class Measured:
    build_seconds: float = 0.0
    healthy_seconds: list[float] = field(default_factory=list)
    stop_seconds: float = 0.0


MEASURED = Measured()


class Podman:
    """podman with a private store and the flags these machines need (see docs/getting-started.md)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.flags = [
            f"--root={workdir / 'root'}",
            f"--runroot={workdir / 'runroot'}",
            f"--tmpdir={workdir / 'tmp'}",
            "--storage-driver=vfs",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime=runc",
        ]
        # podman's defaults (nofile 1048576) exceed the sandbox's hard limits; runc may not raise them.
        nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
        self.ulimits = [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *self.flags, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def logs(self, name: str) -> str:
        result = self("logs", name, check=False)
        return result.stdout + result.stderr

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    assert shutil.which("podman"), "podman is missing: run scripts/image-test.sh (it installs it)"
    workdir = Path(tempfile.mkdtemp(prefix="smartplexd-image-test-", dir="/var/tmp"))
    workdir.chmod(0o755)  # the container's user must reach the config folders below it
    (workdir / "tmp").mkdir()
    pm = Podman(workdir)
    try:
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time=0", check=False, timeout=120)
        pm("rmi", "--all", "--force", check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    base = os.environ.get("SMARTPLEXD_IMAGE_BASE")
    if not base:
        made = subprocess.run(
            ["bash", str(ROOT / "scripts" / "image-base.sh")], capture_output=True, text=True, timeout=900, check=True
        )
        base = made.stdout.strip().splitlines()[-1]
    podman("import", "--change", 'CMD ["bash"]', base, BASE_TAG, timeout=300)
    start = time.monotonic()
    result = podman(
        "build",
        "--format=docker",  # the OCI format drops HEALTHCHECK
        "--pull=never",
        "--network=host",
        "--layers=false",
        *podman.ulimits,
        f"--tag={TAG}",
        str(ROOT),
        check=False,
        timeout=1200,
    )
    MEASURED.build_seconds = time.monotonic() - start
    assert result.returncode == 0, f"image build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return TAG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_folder(podman: Podman, name: str) -> Path:
    """An empty folder owned by root, as docker creates for a missing bind source (podman insists it exists)."""
    folder = podman.workdir / "volumes" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.parent.chmod(0o755)
    folder.mkdir(exist_ok=True)
    return folder


def run(podman: Podman, image: str, name: str, folder: Path, *extra: str, port: int | None = None) -> int:
    port = port or free_port()
    podman(
        "run",
        "--detach",
        f"--name={name}",
        "--network=slirp4netns",
        f"--publish=127.0.0.1:{port}:{PORT}",
        f"--volume={folder}:/config",
        *podman.ulimits,
        *extra,
        image,
    )
    return port


def wait_healthy(podman: Podman, name: str, port: int, timeout: float = 90) -> float:
    """Seconds until GET /healthz answered 200 (fails with the container's log if it never does)."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        state = podman.inspect(name)["State"]
        if not state["Running"]:
            raise AssertionError(f"{name} exited with {state['ExitCode']}:\n{podman.logs(name)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                if response.status == 200:
                    return time.monotonic() - start
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"/healthz did not answer within {timeout} s ({last}):\n{podman.logs(name)}")


def proc_status(podman: Podman, name: str) -> dict[str, list[str]]:
    text = podman("exec", name, "cat", "/proc/1/status").stdout
    return {k: v.split() for k, _, v in (line.partition(":") for line in text.splitlines())}


# --- the story -------------------------------------------------------------------------------------------


def test_image_keeps_its_metadata(podman: Podman, image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    healthcheck = inspected.get("Healthcheck") or config.get("Healthcheck") or {}
    assert "/healthz" in " ".join(healthcheck.get("Test", [])), "HEALTHCHECK lost (build with --format docker)"
    assert f"{PORT}/tcp" in config["ExposedPorts"]
    assert "/config" in config["Volumes"]
    assert config["Entrypoint"] == ["smartplexd-entrypoint"]
    assert config["Cmd"] == ["smartplexd", "run"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SMARTPLEXD_CONFIG"] == "/config/config.yaml"
    assert not [k for k in env if re.search(r"TOKEN|KEY|PASSWORD|SECRET", k)]


def test_first_start_creates_config_as_puid_and_answers_healthz(podman: Podman, image: str) -> None:
    folder = config_folder(podman, "first")
    port = run(podman, image, "first", folder, "--env=PUID=1234", "--env=PGID=2345", "--env=TZ=Europe/Paris")
    MEASURED.healthy_seconds.append(wait_healthy(podman, "first", port))

    status = proc_status(podman, "first")
    assert status["Uid"] == ["1234"] * 4 and status["Gid"] == ["2345"] * 4, "PID 1 runs as PUID:PGID"
    assert status["CapEff"] == ["0000000000000000"]
    cmdline = podman("exec", "first", "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[-3:-1] == ["/opt/smartplexd/bin/smartplexd", "run"], "the daemon itself is PID 1"
    plugins = json.loads(podman("exec", "--user=1234:2345", "first", "smartplexd", "plugins", "--json").stdout)
    assert {"sonarr", "radarr", "overseerr", "tautulli"} <= {p["name"] for p in plugins}
    check = podman("exec", "--user=1234:2345", "first", "smartplexd", "check", "--offline", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    health = podman("healthcheck", "run", "first", check=False)
    assert health.returncode == 0, health.stdout + health.stderr

    for path in (folder, folder / "config.yaml", folder / "rules", folder / "smartplexd.db"):
        assert path.exists(), f"{path.name} was not created on first start"
        assert (path.stat().st_uid, path.stat().st_gid) == (1234, 2345), path
    assert re.search(r"^timezone: Europe/Paris", (folder / "config.yaml").read_text(), re.M)
    logs = podman.logs("first")
    assert "entrypoint: first start: created /config/config.yaml from the example" in logs
    assert "smartplexd listening on http://0.0.0.0:8765" in logs


def test_sigterm_stops_cleanly(podman: Podman, image: str) -> None:
    start = time.monotonic()
    podman("stop", "--time=40", "first", timeout=90)
    MEASURED.stop_seconds = time.monotonic() - start
    state = podman.inspect("first")["State"]
    assert state["ExitCode"] == 0, podman.logs("first")
    assert MEASURED.stop_seconds < 30, "stopped by SIGKILL after the timeout, not by SIGTERM"
    logs = podman.logs("first")
    assert "stopping: no new connections" in logs
    assert re.search(r"INFO +smartplexd\.daemon: stopped \(released \d+ lock", logs), logs[-2000:]


def test_second_start_keeps_the_config(podman: Podman, image: str) -> None:
    folder = config_folder(podman, "first")
    config = folder / "config.yaml"
    config.write_text(config.read_text() + "# edited by the user\n")
    port = int(podman.inspect("first")["HostConfig"]["PortBindings"][f"{PORT}/tcp"][0]["HostPort"])
    podman("start", "first")
    MEASURED.healthy_seconds.append(wait_healthy(podman, "first", port))
    assert podman.logs("first").count("first start: created /config/config.yaml") == 1
    assert config.read_text().endswith("# edited by the user\n")
    podman("stop", "--time=40", "first", timeout=90)
    assert podman.inspect("first")["State"]["ExitCode"] == 0


def test_user_flag_instead_of_puid(podman: Podman, image: str) -> None:
    folder = config_folder(podman, "user")
    os.chown(folder, 1500, 1500)
    port = run(podman, image, "user", folder, "--user=1500:1500")
    MEASURED.healthy_seconds.append(wait_healthy(podman, "user", port))
    assert proc_status(podman, "user")["Uid"] == ["1500"] * 4
    assert (folder / "config.yaml").stat().st_uid == 1500
    assert "(from --user; PUID/PGID ignored)" in podman.logs("user")
    podman("stop", "--time=40", "user", timeout=90)
    assert podman.inspect("user")["State"]["ExitCode"] == 0


def test_puid_zero_is_refused(podman: Podman, image: str) -> None:
    folder = config_folder(podman, "root")
    result = podman(
        "run",
        "--name=root",
        "--network=none",
        f"--volume={folder.parent}:/data",
        *podman.ulimits,
        "--env=PUID=0",
        "--env=SMARTPLEXD_CONFIG=/data/root/config.yaml",
        image,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to run as root" in result.stderr


def test_image_is_small_and_reported(podman: Podman, image: str) -> None:
    size = int(podman("image", "inspect", "--format={{.Size}}", image).stdout.strip())
    archive = podman.workdir / "image.tar"
    podman("save", "--format=docker-archive", f"--output={archive}", image, timeout=600)
    compressed = _gzip_size(archive)
    archive.unlink()
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB"
    _report(size, compressed)


def _gzip_size(path: Path) -> int:
    """Bytes of the image archive gzip-compressed at level 6 (about what a registry pull downloads)."""
    total = 0

    class Counter:
        def write(self, data: bytes) -> int:
            nonlocal total
            total += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    with path.open("rb") as src, gzip.GzipFile(fileobj=Counter(), mode="wb", compresslevel=6) as dst:  # type: ignore[arg-type]
        shutil.copyfileobj(src, dst, 1 << 20)
    return total


def _report(size: int, compressed: int) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.report import write_section

    mb = 1000**2
    healthy = ", ".join(f"{s:.1f} s" for s in MEASURED.healthy_seconds) or "not measured"
    podman_version = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=False).stdout
    body = f"""
Built and run by `make image-test` (`tests/test_image.py`) with {podman_version.strip() or "podman"}, vfs storage,
on a debootstrapped debian:bookworm-slim base.

| what | value |
|---|---|
| image size (uncompressed, as `docker images` shows it) | {size / mb:.0f} MB |
| image size gzip-compressed (about what a pull downloads) | {compressed / mb:.0f} MB |
| build time (no cache, both stages) | {MEASURED.build_seconds:.0f} s |
| start to `/healthz` answering 200 (first start, restart, `--user`) | {healthy} |
| `podman stop` (SIGTERM) to exit code 0 | {MEASURED.stop_seconds:.1f} s |
"""
    write_section("image", "Container image", body)
    if GETTING_STARTED.exists():
        text = GETTING_STARTED.read_text()
        figure = f"<!-- image-size -->{size / mb:.0f} MB ({compressed / mb:.0f} MB compressed)<!-- /image-size -->"
        GETTING_STARTED.write_text(re.sub(r"<!-- image-size -->.*?<!-- /image-size -->", figure, text))
