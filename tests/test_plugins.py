"""Plugins are discovered through the `smartplexd` entry-point group — built-ins and third parties alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from smartplexd import hookspecs
from smartplexd.plugins import create_plugin_manager, list_plugins

THIRD_PARTY = """
from smartplexd import hookimpl
from smartplexd.model import FactDef


@hookimpl
def smartplexd_facts():
    return [FactDef("jellyfin.favourite", "bool", "Marked favourite in Jellyfin")]
"""


def _install_fake_distribution(root) -> None:
    """A minimal installed distribution: a module plus dist-info with an entry point, on PYTHONPATH."""
    (root / "smartplexd_jellyfin.py").write_text(THIRD_PARTY)
    info = root / "smartplexd_jellyfin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smartplexd-jellyfin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[smartplexd]\njellyfin = smartplexd_jellyfin\n")


def test_third_party_plugin_is_loaded_from_its_entry_point(tmp_path):
    _install_fake_distribution(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "smartplexd", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["jellyfin"]["version"] == "1.2.3"
    assert plugins["jellyfin"]["hooks"] == ["smartplexd_facts"]
    assert plugins["jellyfin"]["builtin"] is False


def test_builtin_integrations_arrive_through_entry_points_too():
    names = {p.name: p for p in list_plugins(create_plugin_manager())}
    for name in ("sonarr", "radarr", "overseerr", "tautulli"):
        assert name in names
        assert names[name].module == f"smartplexd_plugins.{name}"
        assert names[name].builtin is False


def test_every_hook_is_documented():
    hooks = [name for name in dir(hookspecs) if name.startswith("smartplexd_")]
    assert len(hooks) >= 8
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(textwrap.dedent(doc).strip()) > 40, f"{name} needs a docstring"
