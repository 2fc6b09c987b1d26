"""docs/configuration.md is generated from the config schema and must be current.

When a config key, default or description changes, or config.example.yaml's comments do, this fails
until ``python -m smartplexd.docs_config`` is run and the result committed.
"""

from __future__ import annotations

from pathlib import Path

from smartplexd import docs_config
from smartplexd.config import json_schema


def test_committed_configuration_reference_is_current() -> None:
    expected = docs_config.render()
    current = docs_config.DOC.read_text() if docs_config.DOC.exists() else ""
    assert current == expected, "docs/configuration.md is stale: run `python -m smartplexd.docs_config` and commit it"


def test_every_key_of_the_schema_is_documented() -> None:
    text = docs_config.DOC.read_text()
    schema = json_schema()
    defs = schema["$defs"]

    def keys(node: dict) -> set[str]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        found = set(node.get("properties", {}))
        children = [*node.get("properties", {}).values(), *node.get("patternProperties", {}).values()]
        for child in children:
            for option in [child, *child.get("anyOf", []), child.get("items", {})]:
                if option.get("$ref"):  # sections; the inline {file: ...} of a secret is not a key
                    found |= keys(option)
                if option.get("items", {}).get("$ref"):
                    found |= keys(option["items"])
        return found

    missing = sorted(k for k in keys(schema) if f"| `{k}` |" not in text)
    assert not missing, f"keys without a row: {missing}"


def test_defaults_and_types_read_like_the_config(tmp_path: Path) -> None:
    text = docs_config.DOC.read_text()
    assert "| `listen` | string | `0.0.0.0:8765` |" in text
    assert "| `max_bytes_per_run` | size | `2TB` |" in text
    assert "| `max_webhook_bytes` | size | `1MiB` |" in text
    assert "| `freshness` | duration | `1d` |" in text
    assert "| `rules` | list of string | `[./rules]` |" in text, "a default_factory default is shown too"
    assert "| `token` | secret | **required** |" in text
    assert "### `integrations.sonarr[]`" in text.splitlines(), "plugin sections nest under integrations"


def test_example_comments_are_read_by_key_path(tmp_path: Path) -> None:
    example = tmp_path / "example.yaml"
    example.write_text(
        "# file header\n\n"
        "# The HTTP server.\nserver:\n"
        '  listen: "0.0.0.0:1"   # where it listens # really\n'
        "plex:\n  servers:\n    - name: a          # first server\n      url: 'http://x#y'  # the URL\n"
        "    - name: b          # ignored: the first comment per key wins\n"
        "webhooks:\n  plex:\n    auth: url_token    # the auth\n"
    )
    notes = docs_config.read_example(example)
    assert notes.intros == {"server": "The HTTP server."}
    assert notes.comments == {
        "server.listen": "where it listens # really",
        "plex.servers[].name": "first server",
        "plex.servers[].url": "the URL",
        "webhooks.<name>.auth": "the auth",
    }


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    assert docs_config.main(["--check", "--output", str(stale)]) == 1
    assert docs_config.main(["--output", str(stale)]) == 0
    assert docs_config.main(["--check", "--output", str(stale)]) == 0
