"""compose.yaml, smartplexd.env.example and the Unraid template agree with the image and the example config.

A user copies these files and fills in values; these tests make sure that whatever the example config
asks for (${VARS}, the port, /config) is offered by each of them, with secrets masked and none filled in.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from smartplexd.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
PORT = ServerConfig().port
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|NOTIFY_URL")


def example_variables() -> set[str]:
    """Every ${NAME} the example config reads (comments excluded)."""
    names: set[str] = set()
    for line in (ROOT / "config.example.yaml").read_text().splitlines():
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", code))
    return names


def env_example() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in (ROOT / "smartplexd.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            pairs[name.strip()] = value
    return pairs


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_example_config_reads_its_secrets_from_the_environment() -> None:
    names = example_variables()
    assert {"PLEX_TOKEN", "SMARTPLEXD_ADMIN_TOKEN", "SONARR_API_KEY"} <= names


def test_env_example_offers_every_variable_and_fills_in_none() -> None:
    pairs = env_example()
    assert set(pairs) == example_variables()
    assert all(value == "" for value in pairs.values()), "no secret values in an example file"


def test_compose_runs_smartplexd_next_to_plex_and_the_arrs(compose: dict) -> None:
    services = compose["services"]
    assert {"smartplexd", "plex", "sonarr", "radarr", "overseerr", "tautulli"} <= set(services)
    app = services["smartplexd"]
    assert app["build"] == "."
    assert app["env_file"] == "smartplexd.env"
    assert any(v.endswith(":/config") for v in app["volumes"])
    assert f"{PORT}:{PORT}" in app["ports"]
    env = app["environment"]
    assert env["PUID"].isdigit() and env["PGID"].isdigit() and "TZ" in env
    seconds = int(app["stop_grace_period"].rstrip("s"))
    from smartplexd.daemon import SHUTDOWN_GRACE

    assert seconds > SHUTDOWN_GRACE, "docker must wait longer than the daemon's own shutdown grace"
    for name, service in services.items():
        for key in (service.get("environment") or {}) if isinstance(service.get("environment"), dict) else []:
            value = service["environment"][key]
            assert not (SECRET_NAME.search(key) and value), f"{name}: {key} has a value in compose.yaml"


def test_compose_hostnames_match_the_example_config(compose: dict) -> None:
    """The URLs in config.example.yaml point at the compose service names (radarr4k is the optional extra)."""
    hosts = set(re.findall(r'url: "http://([a-z0-9]+):\d+"', (ROOT / "config.example.yaml").read_text()))
    assert hosts - {"radarr4k"} <= set(compose["services"])


def test_unraid_template_offers_port_config_folder_ids_and_masked_secrets() -> None:
    root = ET.parse(ROOT / "unraid" / "smartplexd.xml").getroot()
    assert root.tag == "Container" and root.get("version") == "2"
    assert root.findtext("Name") == "smartplexd"
    assert f"[PORT:{PORT}]" in (root.findtext("WebUI") or "")
    configs = {c.get("Target"): c for c in root.findall("Config")}
    port = configs[str(PORT)]
    assert (port.get("Type"), port.get("Mode"), port.text) == ("Port", "tcp", str(PORT))
    folder = configs["/config"]
    assert (folder.get("Type"), folder.get("Mode")) == ("Path", "rw")
    assert folder.text == "/mnt/user/appdata/smartplexd"
    assert (configs["PUID"].text, configs["PGID"].text) == ("99", "100"), "Unraid's nobody:users"
    assert "TZ" in configs
    for name in example_variables():
        assert name in configs, f"{name} is read by the example config but missing from the template"
        entry = configs[name]
        assert entry.get("Type") == "Variable" and not (entry.text or "").strip()
        if SECRET_NAME.search(name):
            assert entry.get("Mask") == "true", f"{name} must be masked in the Unraid UI"
    stop = re.search(r"--stop-timeout=(\d+)", root.findtext("ExtraParams") or "")
    from smartplexd.daemon import SHUTDOWN_GRACE

    assert stop and int(stop.group(1)) > SHUTDOWN_GRACE, "docker must wait longer than the daemon's shutdown grace"
    for link in ("Support", "Project", "Icon", "Registry", "TemplateURL"):
        assert not (root.findtext(link) or "").strip(), f"{link}: no invented URLs"
