"""``web/openapi.yaml`` is the truth: schemathesis fuzzes a real daemon process from it.

The daemon runs against a simulated Plex with ``deletion.enabled: false`` (an apply can only be refused).
Every operation except the endless SSE stream is fuzzed with a viewer and with an admin token; no answer
may be a 5xx, carry an undocumented status or content type, or break its documented schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import yaml
from daemon_harness import ADMIN, PLEX_TOKEN, VIEWER, DaemonProcess, auth, start_daemon
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks

from smartplexd.demo import plex
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.web.app import openapi_text

MAX_EXAMPLES = 12
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]
SKIP = {"/api/events"}  # an endless stream; tests/test_sse.py covers it


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[DaemonProcess]:
    universe = generate(seed=5, movies=15, shows=1, seasons_per_show=1, episodes_per_season=2)
    with ThreadedServer(plex.create_app(universe, token=PLEX_TOKEN)) as srv:
        d = start_daemon(tmp_path_factory.mktemp("openapi"), srv.url, rate_limit=3, log_level="WARNING")
        try:
            yield d
        finally:
            assert d.stop() == 0


def test_the_document_is_served_and_describes_every_route_of_section_7(daemon):
    r = httpx.get(f"{daemon.url}/openapi.yaml")
    assert r.status_code == 200 and r.text == openapi_text()
    spec = yaml.safe_load(r.text)
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    contract = {
        ("/", "GET"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
        ("/api/status", "GET"),
        ("/api/integrations/health", "GET"),
        ("/api/events", "GET"),
        ("/api/deletions", "GET"),
        ("/api/plans/{id}", "GET"),
        ("/api/sync", "POST"),
        ("/api/plans", "POST"),
        ("/api/plans/{id}/apply", "POST"),
        ("/api/deletions/{id}/retry", "POST"),
        ("/api/ask", "POST"),
        ("/api/requests", "POST"),
        ("/hooks/{source}", "POST"),
    }
    assert contract <= documented
    served = httpx.get(f"{daemon.url}/api/status")
    assert served.status_code == 200, "the status routes are mounted"


@pytest.mark.parametrize("token", [VIEWER, ADMIN], ids=["viewer", "admin"])
def test_schemathesis_finds_no_server_errors_and_no_schema_violations(daemon, token):
    schema = schemathesis.openapi.from_url(f"{daemon.url}/openapi.yaml")
    operations = [result.ok() for result in schema.get_all_operations()]
    tested = []
    for operation in operations:
        if operation.path in SKIP:
            continue

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=daemon.url, headers=auth(token), checks=CHECKS, timeout=30)

        run()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 14, tested
    # The fuzzing never applied a deletion (deletion.enabled is false) and the daemon is still healthy.
    assert not daemon.query("SELECT id FROM deletion_events")
    assert httpx.get(f"{daemon.url}/healthz").json() == {"status": "ok"}
    assert "Traceback" not in daemon.log_text()
