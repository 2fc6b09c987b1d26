"""docs/api.md is generated from smartplexd/web/openapi.yaml and must be current and complete."""

from __future__ import annotations

from pathlib import Path

import yaml

from smartplexd import docs_api


def test_committed_api_reference_is_current() -> None:
    current = docs_api.DOC.read_text() if docs_api.DOC.exists() else ""
    assert current == docs_api.render(), "docs/api.md is stale: run `python -m smartplexd.docs_api` and commit it"


def test_every_operation_has_a_section_an_index_row_and_its_answers() -> None:
    spec = yaml.safe_load(docs_api.SPEC.read_text())
    text = docs_api.DOC.read_text()
    lines = text.splitlines()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in docs_api.METHODS:
                continue
            heading = f"## {method.upper()} {path}"
            assert heading in lines, heading
            assert f"(#{docs_api._anchor(f'{method} {path}')})" in text, f"index link for {heading}"
            section = text[text.index(heading + "\n") :]
            section = section[: section.find("\n## ", 1)]
            for status in op["responses"]:
                assert f"\n| {status} |" in section, f"{heading}: answer {status}"
    for name in spec["components"]["schemas"]:
        assert f"### {name}" in lines


def test_auth_column_reads_the_role_from_the_contract() -> None:
    text = docs_api.DOC.read_text()
    assert "| GET | [`/healthz`](#get-healthz) | none |" in text
    assert "| POST | [`/api/plans/{id}/apply`](#post-apiplansidapply) | bearer (admin) |" in text
    assert "| POST | [`/api/requests`](#post-apirequests) | bearer (requester or admin) |" in text


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# old\n")
    assert docs_api.main(["--check", "--output", str(stale)]) == 1
    assert docs_api.main(["--output", str(stale)]) == 0
    assert docs_api.main(["--check", "--output", str(stale)]) == 0
