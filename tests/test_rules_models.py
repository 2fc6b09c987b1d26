"""Rule files are code: loading them, and errors that point at the line (ARCHITECTURE §4)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rules_helpers import seed_registry

from smartplexd.rules.facts import registry
from smartplexd.rules.models import AllOf, AnyOf, FactCondition, NotOf, load_rules, parse_rule
from smartplexd.yamlsource import SourceErrors

REPO = Path(__file__).resolve().parent.parent
REG = seed_registry()


def load_text(tmp_path: Path, text: str, name: str = "rule.yaml") -> list:
    path = tmp_path / name
    path.write_text(text)
    return load_rules([path], REG)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SourceErrors) as exc:
        load_text(tmp_path, text)
    return [str(e) for e in exc.value.errors]


def test_the_architecture_example_loads_with_values_parsed_once(tmp_path: Path) -> None:
    rules = load_text(
        tmp_path,
        """\
name: watched-movies-90d
description: Movies everyone finished more than 90 days ago
libraries: [Movies]
schedule: "0 3 * * *"
when:
  all:
    - {fact: plex.view_count, op: ">=", value: 1}
    - {fact: plex.last_viewed_at, older_than: 90d}
    - any:
        - {fact: radarr.size_on_disk, op: ">", value: 10GB}
        - {fact: plex.added_at, older_than: 2y}
unless:
  any:
    - {fact: plex.labels, contains: keep}
    - {fact: overseerr.request_status, op: in, value: [pending]}
action: {type: delete, grace_period: 7d, collection: "Leaving Soon"}
limits: {max_items: 20, max_bytes: 500GB}
order_by: [-plex.size, plex.last_viewed_at]
storage: {when_free_below: 10%, until_free_above: 20%}
""",
    )
    (rule,) = rules
    assert rule.source.endswith("rule.yaml:1")
    assert isinstance(rule.when, AllOf) and isinstance(rule.unless, AnyOf)
    view, older, either = rule.when.all
    assert (view.op, view.param) == (">=", 1)
    assert (older.op, older.param) == ("older_than", 90 * 86_400)
    assert isinstance(either, AnyOf) and either.any[0].param == 10 * 10**9 and either.any[1].param == 2 * 365 * 86_400
    assert rule.unless.any[0].op == "contains" and rule.unless.any[1].param == ["pending"]
    assert rule.action.grace_period == 7 * 86_400 and rule.limits.max_bytes == 500 * 10**9
    assert rule.storage is not None and (rule.storage.when_free_below, rule.storage.until_free_above) == (10, 20)
    assert rule.media_types == ["movie", "show"]
    assert rule.sources() == ["overseerr", "radarr"]


def test_every_operator_and_combinator_parses(tmp_path: Path) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
name: all-ops
media_types: [movie, episode]
when:
  all:
    - {fact: plex.year, op: "=", value: 2001}
    - {fact: plex.year, op: "!=", value: 2002}
    - {fact: plex.size, op: ">", value: 1.5GiB}
    - {fact: plex.size, op: ">=", value: 1}
    - {fact: tautulli.watch_time, op: "<", value: 12h}
    - {fact: plex.added_at, op: "<=", value: "2024-01-31"}
    - {fact: sonarr.status, op: in, value: [ended, deleted]}
    - {fact: sonarr.status, not_in: [continuing]}
    - {fact: radarr.tags, contains: kids}
    - {fact: plex.title, not_contains: sample}
    - {fact: radarr.monitored, exists: true}
    - {fact: overseerr.requested_by, missing: true}
    - {fact: plex.last_viewed_at, newer_than: 1d12h}
    - {fact: plex.title, matches: "^The "}
    - not: {fact: radarr.monitored, op: "=", value: false}
""",
    )
    ops = [c.op for c in rule.when.all if isinstance(c, FactCondition)]
    assert ops == ["=", "!=", ">", ">=", "<", "<=", "in", "not_in", "contains", "not_contains", "exists", "missing",
                   "newer_than", "matches"]  # fmt: skip
    by_op = {c.op: c for c in rule.when.all if isinstance(c, FactCondition)}
    assert by_op[">"].param == int(1.5 * 2**30)
    assert by_op["<"].param == 12 * 3600
    assert by_op["<="].param == 1_706_659_200  # 2024-01-31T00:00:00Z
    assert by_op["newer_than"].param == 36 * 3600
    assert by_op["matches"].param.pattern == "^The "
    assert isinstance(rule.when.all[-1], NotOf)


def test_unknown_fact_names_the_line_and_the_closest_facts(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
name: typo
when:
  all:
    - {fact: plex.view_count, op: ">=", value: 1}
    - {fact: plex.last_viewd_at, older_than: 90d}
""",
    )
    assert len(errors) == 1
    assert re.match(r".*rule\.yaml:5:14: when\.all\[1\]\.fact: unknown fact 'plex\.last_viewd_at'; did you mean "
                    r"plex\.last_viewed_at", errors[0]), errors  # fmt: skip


def test_type_mismatches_bad_units_and_structure_errors_all_reported_with_lines(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
name: broken
when:
  all:
    - {fact: plex.size, contains: x}
    - {fact: plex.size, op: ">", value: 10XB}
    - {fact: plex.added_at, older_than: ninety days}
    - {fact: plex.title, op: ">", value: a}
    - {fact: plex.labels, op: "=", value: keep}
    - {fact: plex.view_count, older_than: 3d}
    - {fact: plex.view_count, op: "~", value: 1}
    - {fact: plex.title, matches: "(unclosed"}
    - {fakt: plex.size}
    - {fact: plex.view_count, op: in, value: 3}
action: {type: shred}
limits: {max_bytes: lots}
order_by: [-plex.sise]
""",
    )
    text = "\n".join(errors)
    expected = [
        r"rule\.yaml:4:7: when\.all\[0\]: `contains` needs a list or text fact; plex\.size is a size",
        r"rule\.yaml:5:7: when\.all\[1\]: not a size: '10XB'",
        r"rule\.yaml:6:7: when\.all\[2\]: not a duration: 'ninety days'",
        r"rule\.yaml:7:7: when\.all\[3\]: `>` needs a number, size, duration or date; plex\.title is text",
        r"rule\.yaml:8:7: when\.all\[4\]: `=` cannot compare a list",
        r"rule\.yaml:9:7: when\.all\[5\]: `older_than` needs a date fact; plex\.view_count is a number",
        r"rule\.yaml:10:\d+: when\.all\[6\]\.op: unknown operator '~'",
        r"rule\.yaml:11:7: when\.all\[7\]: not a valid regular expression '\(unclosed'",
        r"rule\.yaml:12:7: when\.all\[8\]: a condition is \{fact: \.\.\., op: \.\.\., value: \.\.\.\}",
        r"rule\.yaml:13:7: when\.all\[9\]: `in` takes a non-empty list",
        r"rule\.yaml:14:\d+: action\.type: input should be 'delete', 'unmonitor' or 'notify'",
        r"rule\.yaml:15:\d+: limits\.max_bytes: not a size: 'lots'",
        r"rule\.yaml:16:\d+: order_by: unknown fact 'plex\.sise' in order_by; did you mean plex\.size",
    ]
    for pattern in expected:
        assert re.search(pattern, text), f"{pattern}\nnot in:\n{text}"
    assert len(errors) == len(expected)


def test_unknown_keys_and_missing_when_are_errors(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "name: x\nwhne: {fact: plex.size, op: '>', value: 1}\n")
    assert any("rule.yaml:2:1: whne: unknown key; did you mean 'when'?" in e for e in errors), errors
    assert any("rule.yaml:1:1: when: required key is missing" in e for e in errors), errors


def test_duplicate_rule_names_across_files_point_at_the_second(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    body = "when: {fact: plex.view_count, op: '>', value: 1}\n"
    (folder / "a.yaml").write_text("name: same\n" + body)
    (folder / "b.yaml").write_text("# another\n- name: other\n  when: {fact: plex.year, exists: true}\n"
                                   "- name: same\n  " + body)  # fmt: skip
    with pytest.raises(SourceErrors) as exc:
        load_rules([folder], REG)
    (error,) = exc.value.errors
    assert str(error).startswith(f"{folder / 'b.yaml'}:4:")
    assert f"duplicate rule name 'same' (first defined at {folder / 'a.yaml'}:1)" in str(error)


def test_a_folder_loads_yaml_files_sorted_with_lists_and_single_rules(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.yml").write_text("name: b\nwhen: {fact: plex.year, exists: true}\n")
    (folder / "a.yaml").write_text(
        "- name: a1\n  when: {fact: plex.year, missing: true}\n"
        "- name: a2\n  enabled: false\n  when: {fact: plex.year, exists: false}\n"
    )
    (folder / "sub" / "c.yaml").write_text("name: c\nwhen: {not: {fact: plex.year, exists: true}}\n")
    (folder / "notes.txt").write_text("not a rule")
    rules = load_rules([folder], REG)
    assert [r.name for r in rules] == ["a1", "a2", "b", "c"]
    assert rules[1].enabled is False and rules[1].when.op == "missing"
    assert rules[1].source == f"{folder / 'a.yaml'}:3"


def test_missing_rules_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceErrors, match="rules path not found"):
        load_rules([tmp_path / "nope"], REG)


def test_parse_rule_validates_an_assistant_draft() -> None:
    rule = parse_rule({"name": "draft", "when": {"fact": "plex.view_count", "op": "=", "value": 0}}, REG)
    assert rule.source == "<draft>:1"
    with pytest.raises(SourceErrors) as exc:
        parse_rule({"name": "draft", "when": {"fact": "radarr.size", "op": ">", "value": "1GB"}}, REG, source="ai")
    assert "ai:1:1: when.fact: unknown fact 'radarr.size'; did you mean radarr.size_on_disk" in str(exc.value)


def test_collection_without_grace_and_storage_targets_are_checked() -> None:
    with pytest.raises(SourceErrors, match="`collection` only applies with a grace_period"):
        parse_rule({"name": "x", "when": {"fact": "plex.year", "exists": True}, "action": {"collection": "L"}}, REG)
    with pytest.raises(SourceErrors, match="until_free_above must be at least when_free_below"):
        parse_rule(
            {"name": "x", "when": {"fact": "plex.year", "exists": True},
             "storage": {"when_free_below": "20%", "until_free_above": "10%"}},
            REG,
        )  # fmt: skip


def test_every_shipped_recipe_is_valid_against_the_installed_plugins() -> None:
    rules = load_rules([REPO / "rules"], registry())
    assert len(rules) >= 6
    for rule in rules:
        assert rule.description, rule.name
        text = Path(rule.source.rsplit(":", 1)[0]).read_text()
        assert text.lstrip().startswith("#"), f"{rule.source}: recipes start with a comment saying what they do"


def test_docs_rules_md_is_generated_from_the_current_registry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smartplexd.rules.docs"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out == (REPO / "docs" / "rules.md").read_text(), (
        "docs/rules.md is stale: run `python -m smartplexd.rules.docs > docs/rules.md`"
    )
    for fact in registry().names():
        assert f"`{fact}`" in out


def test_facts_command_lists_core_and_plugin_facts(capsys: pytest.CaptureFixture[str]) -> None:
    from smartplexd import cli

    assert cli.main(["facts", "--json"]) == 0
    facts = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert facts["plex.last_viewed_at"]["type"] == "datetime" and facts["plex.labels"]["source"] == "plex"
    assert set(facts) == set(registry().names())
    assert cli.main(["facts"]) == 0
    assert "plex.view_count" in capsys.readouterr().out
