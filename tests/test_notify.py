"""Notifications through apprise URLs: routed by event, delivered over real HTTP to a local receiver, and never
in the way of a deletion when a channel is unreachable or a plugin fails."""

from __future__ import annotations

import json
import socket

import pytest
from aiohttp import web
from deletion_world import ACTOR, World, build_world

from smartplexd import deletion
from smartplexd.config import NOTIFICATION_EVENTS, load_config
from smartplexd.demo.serving import ThreadedServer
from smartplexd.model import Health, HealthResult, Notification
from smartplexd.notify import deliver, integration_down, leaving_soon_digest, notify, plex_unauthorized
from smartplexd.plugins import create_plugin_manager, hookimpl, list_plugins


class Receiver:
    """An HTTP server that records what apprise's ``json://`` posts to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self.server = ThreadedServer(app).start()
        self.port = int(self.server.url.rsplit(":", 1)[1])

    async def _post(self, request: web.Request) -> web.Response:
        self.received.append({"path": request.path, **json.loads(await request.read())})
        return web.json_response({})

    def url(self, path: str = "") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, notifications: list[dict]):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"database": str(tmp_path / "db.sqlite"), "notifications": notifications}))
    return load_config(path)


def test_routes_each_event_to_the_urls_that_subscribe(tmp_path, receiver) -> None:
    config = _config(
        tmp_path,
        [
            {"url": receiver.url("/done"), "events": ["deletion.done", "leaving_soon"]},
            {"url": receiver.url("/failures"), "events": ["deletion.failed", "plex.unauthorized"]},
        ],
    )
    notify(config, Notification("deletion.done", "Deleted 2 item(s)", "- A\n- B", severity="success"))
    notify(config, plex_unauthorized("home"))
    assert [(r["path"], r["title"]) for r in receiver.received] == [
        ("/done", "Deleted 2 item(s)"),
        ("/failures", "Plex server home rejected the token"),
    ]
    assert receiver.received[0]["message"] == "- A\n- B" and receiver.received[0]["type"] == "success"
    assert receiver.received[1]["type"] == "failure" and "X-Plex-Token" in receiver.received[1]["message"]


def test_unreachable_url_is_logged_not_raised(tmp_path, receiver, caplog) -> None:
    config = _config(
        tmp_path,
        [
            {"url": f"json://127.0.0.1:{_closed_port()}", "events": ["deletion.done"]},
            {"url": receiver.url(), "events": ["deletion.done"]},
        ],
    )
    event = Notification("deletion.done", "Deleted 1 item(s)", "- A")
    assert deliver(config, event) == 1  # the broken channel does not silence the working one
    notify(config, event)
    assert len(receiver.received) == 2
    assert "notifications[0]" in caplog.text


def test_a_failing_plugin_does_not_stop_the_others(tmp_path, receiver) -> None:
    class Broken:
        @hookimpl
        def smartplexd_notify(self, event, ctx):
            raise RuntimeError("smtp exploded")

    pm = create_plugin_manager(load_entry_points=False)
    pm.register(Broken(), name="broken")
    config = _config(tmp_path, [{"url": receiver.url(), "events": ["integration.down"]}])
    down = HealthResult("radarr4k", "radarr", Health.DOWN, error="connection refused")
    notify(config, integration_down(down), pm=pm)
    assert [r["title"] for r in receiver.received] == ["radarr4k is down"]


def test_builtin_channel_is_a_default_plugin() -> None:
    info = {p.name: p for p in list_plugins()}
    assert info["smartplexd.notify"].builtin and "smartplexd_notify" in info["smartplexd.notify"].hooks


def test_builders_use_configurable_event_names() -> None:
    digest = leaving_soon_digest(
        [
            {"title": "Old Movie (1999)", "due_at": 1_800_000_000, "size_bytes": 5 * 10**9, "rule": "watched"},
            {"title": "Other", "due_at": None, "size_bytes": 10**9},
        ]
    )
    assert digest.title.startswith("Leaving soon: 2 items")
    assert "Old Movie (1999)" in digest.body and "[watched]" in digest.body
    for n in (digest, plex_unauthorized("home"), integration_down(HealthResult("x", "radarr", Health.DOWN))):
        assert n.event in NOTIFICATION_EVENTS


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    yield w
    w.close()


def test_deletion_notifies_and_is_not_blocked_by_a_dead_channel(world: World, receiver) -> None:
    world.extra_config["notifications"] = [
        {"url": f"json://127.0.0.1:{_closed_port()}", "events": ["deletion.done"]},
        {"url": receiver.url("/ops"), "events": ["deletion.done", "deletion.partial", "plex.unauthorized"]},
    ]
    world.write_config()
    plan_id = world.make_plan(["plex_only", "show"])
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    assert result.counts() == {"done": 2}
    assert not world.plex_has("plex_only")
    assert [r["title"].split(",")[0] for r in receiver.received] == ["Deleted 2 item(s)"]
    assert world.universe.movies[2].title in receiver.received[0]["message"]

    # A rejected Plex token is announced too.
    second = world.make_plan(["approved"])
    world.faults("plex").revoke_auth = True
    with world.store() as store:
        stopped = deletion.apply_plan(world.config, store, second, actor=ACTOR, confirm="DELETE")
    assert stopped.exit_code == 5
    assert receiver.received[-1]["title"] == "Plex server home rejected the token"
