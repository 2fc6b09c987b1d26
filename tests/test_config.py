"""A user's config.yaml: every mistake is reported at its file:line:column with the key path."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from smartplexd.config import ConfigError, json_schema, load_config

REPO = Path(__file__).resolve().parent.parent

VALID = """\
plex:
  servers:
    - name: home
      url: http://127.0.0.1:32400
      token: ${TEST_PLEX_TOKEN}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).splitlines()


def test_valid_config_loads_with_secrets_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLEX_TOKEN", "tok-123456789")
    config = load_config(write(tmp_path, VALID))
    server = config.plex.servers[0]
    assert server.token.get_secret_value() == "tok-123456789"
    assert "tok-123456789" not in repr(config)
    assert "tok-123456789" not in config.model_dump_json()
    assert config.database_path == tmp_path / "smartplexd.db"


def test_yaml_syntax_error_points_at_the_line(tmp_path):
    path = write(tmp_path, "plex:\n  servers:\n    - name: home\n      url: [unclosed\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:5:1: YAML syntax error")


def test_unknown_key_suggests_the_closest(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLEX_TOKEN", "tok-123456789")
    path = write(tmp_path, VALID + "      libaries: [Movies]\n")
    (line,) = errors_of(path)
    assert line == f"{path}:6:7: plex.servers[0].libaries: unknown key; did you mean 'libraries'?"


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "timezon: UTC\n")
    assert errors_of(path) == [f"{path}:1:1: timezon: unknown key; did you mean 'timezone'?"]


def test_wrong_type_names_the_value(tmp_path):
    path = write(tmp_path, "deletion:\n  enabled: false\n  max_items_per_run: many\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:3:22: deletion.max_items_per_run: input should be a valid integer")
    assert "'many'" in line


def test_unset_env_var_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_PLEX_TOKEN", raising=False)
    path = write(tmp_path, VALID)
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:5:14: plex.servers[0].token: environment variable TEST_PLEX_TOKEN is not set")


def test_env_default_and_flow_style(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    path = write(
        tmp_path,
        "server: {tokens: [{name: admin, role: admin, token: ${NOT_SET_HERE:-0123456789abcdef0}}]}\n",
    )
    config = load_config(path)
    assert config.server.tokens[0].token.get_secret_value() == "0123456789abcdef0"


def test_bad_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLEX_TOKEN", "tok-123456789")
    path = write(tmp_path, VALID.replace("http://127.0.0.1:32400", "htp:/plex"))
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:4:12: plex.servers[0].url: not a valid URL")


def test_token_in_url_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLEX_TOKEN", "tok-123456789")
    path = write(tmp_path, VALID.replace("32400", "32400/?X-Plex-Token=abc"))
    (line,) = errors_of(path)
    assert "credentials do not belong in the URL" in line


def test_several_errors_are_all_reported_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PLEX_TOKEN", "tok-123456789")
    path = write(tmp_path, VALID + "timezone: Mars/Olympus\ndeletion: {window: '3am'}\n")
    lines = errors_of(path)
    assert [ln.split(": ")[1] for ln in lines] == ["timezone", "deletion.window"]


def test_secret_from_file(tmp_path):
    secret = tmp_path / "plex_token"
    secret.write_text("from-a-file-123\n")
    text = VALID.replace("${TEST_PLEX_TOKEN}", "{file: " + str(secret) + "}")
    config = load_config(write(tmp_path, text))
    assert config.plex.servers[0].token.get_secret_value() == "from-a-file-123"


def test_missing_secret_file(tmp_path):
    text = VALID.replace("${TEST_PLEX_TOKEN}", "{file: /nonexistent/secret}")
    (line,) = errors_of(write(tmp_path, text))
    assert "plex.servers[0].token: cannot read secret file /nonexistent/secret" in line


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "plex:\n  servers:\n    - name: home\n      url: http://x:1\n")
    (line,) = errors_of(path)
    assert line == f"{path}:3:7: plex.servers[0].token: required key is missing"


def test_missing_file(tmp_path):
    (line,) = errors_of(tmp_path / "nope.yaml")
    assert line.endswith("nope.yaml:1:1: file not found")


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, "timezone: UTC\ntimezone: Europe/Berlin\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:2:1: timezone: duplicate key")


def test_webhook_auth_needs_its_secret(tmp_path):
    path = write(tmp_path, "webhooks:\n  sonarr: {auth: basic, username: sonarr}\n")
    (line,) = errors_of(path)
    assert "webhooks.sonarr: auth basic needs password" in line


def test_secrets_are_masked_in_logs(tmp_path, monkeypatch, caplog):
    from smartplexd import log

    monkeypatch.setenv("TEST_PLEX_TOKEN", "very-secret-plex-token")
    load_config(write(tmp_path, VALID))
    log.setup("INFO")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_smartplexd", False))
    caplog.handler.addFilter(log.SecretFilter())
    logger = logging.getLogger("smartplexd.test")
    logger.warning("requesting http://plex/?X-Plex-Token=%s", "very-secret-plex-token")
    try:
        raise RuntimeError("boom very-secret-plex-token")
    except RuntimeError:
        logger.exception("failed")
    text = caplog.text
    assert "very-secret-plex-token" not in text
    assert "X-Plex-Token=**********" in text
    assert any(isinstance(f, log.SecretFilter) for f in handler.filters)


def test_secret_masking_in_a_real_process(tmp_path):
    """The filter sits on the process's handler: a subprocess logging a secret never prints it."""
    cfg = write(tmp_path, VALID)
    code = (
        "import logging; from smartplexd.config import load_config; from smartplexd import log;"
        f"load_config({str(cfg)!r}); log.setup('INFO');"
        "logging.getLogger('x').error('token is %s', 'abc-secret-token-xyz')"
    )
    env = {"TEST_PLEX_TOKEN": "abc-secret-token-xyz", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "token is **********" in proc.stderr
    assert "abc-secret-token-xyz" not in proc.stderr


def test_json_schema_covers_plugin_sections():
    schema = json_schema()
    assert schema["title"] == "smartplexd config.yaml"
    text = json.dumps(schema)
    for key in ("plex", "deletion", "webhooks", "max_library_shrink_percent"):
        assert key in text


def test_example_config_passes_check():
    proc = subprocess.run(
        [sys.executable, "-m", "smartplexd", "-c", str(REPO / "config.example.yaml"), "check", "--json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True
    assert summary["plex_servers"] == ["home"]


def test_cli_exit_code_2_on_invalid_config(tmp_path):
    path = write(tmp_path, "timezon: UTC\n")
    proc = subprocess.run(
        [sys.executable, "-m", "smartplexd", "-c", str(path), "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"{path}:1:1: timezon: unknown key" in proc.stderr
