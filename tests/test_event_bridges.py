"""What the daemon hangs on its event bus: notifications for trouble, and a persistent event log."""

from __future__ import annotations

import json
import time

from test_notify import Receiver

from smartplexd.config import load_config
from smartplexd.events import EventBus, EventRecorder
from smartplexd.notify import BusNotifier
from smartplexd.store import open_store


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _config(tmp_path, url: str):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"database": str(tmp_path / "db.sqlite"), "notifications": [{"url": url}]}))
    return load_config(path)


def test_trouble_on_the_bus_becomes_notifications(tmp_path):
    receiver = Receiver()
    try:
        config = _config(tmp_path, receiver.url("/n"))
        store = open_store(config.database_path)
        store.execute(
            "INSERT INTO media_items (id, server, section_id, section_title, rating_key, type, title, size_bytes) "
            "VALUES (1, 'home', '1', 'Movies', '10', 'movie', 'Heat', 5000000000)"
        )
        store.execute("INSERT INTO plans (id, created_at, created_by) VALUES (7, 0, 'scheduler')")
        store.execute(
            "INSERT INTO leaving_soon (item_id, rule, plan_id, added_at, due_at, status, updated_at) "
            "VALUES (1, 'old-movies', 7, 0, ?, 'pending', 0)",
            (time.time() + 7 * 86400,),
        )
        bus = EventBus()
        notifier = BusNotifier(lambda: config, str(config.database_path))
        bus.subscribe(notifier)
        bus.publish("health.changed", name="radarr4k", plugin="radarr", status="down", previous="ok", error="refused")
        bus.publish("health.changed", name="radarr4k", plugin="radarr", status="ok", previous="down", error=None)
        bus.publish("plex.unauthorized", server="home", message="401")
        bus.publish("plex.unauthorized", server="home", message="401")  # the next scheduled sync: not repeated
        bus.publish("sync.refused", server="home", message="sweep of library 'Movies' refused")
        bus.publish("leaving_soon", plan_id=7, items=1)
        bus.publish("sync.progress", server="home", done=1, total=2)  # not news
        _wait_for(lambda: len(receiver.received) >= 4)
        notifier.close()
        titles = [r["title"] for r in receiver.received]
        assert titles == [
            "radarr4k is down",
            "Plex server home rejected the token",
            "Sync of home refused: the library shrank too much",
            "Leaving soon: 1 item (5.0 GB)",
        ]
        assert "Heat" in receiver.received[3]["message"] and "old-movies" in receiver.received[3]["message"]
    finally:
        receiver.close()


def test_events_are_recorded_and_ids_continue_after_a_restart(tmp_path):
    db = str(tmp_path / "db.sqlite")
    open_store(db).close()
    first = EventBus()
    recorder = EventRecorder(db, first, flush_every=0.05).start()
    for done in range(5):
        first.publish("sync.progress", server="home", done=done, total=5, token_free=True)
    recorder.close()
    store = open_store(db)
    rows = store.query("SELECT id, type, data FROM events ORDER BY id")
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads(rows[-1]["data"])["done"] == 4

    restarted = EventBus()  # a new process starts numbering at 1 ...
    again = EventRecorder(db, restarted, flush_every=0.05)
    assert again.resume_ids() == 5  # ... unless it continues after what was recorded
    again.start()
    assert restarted.publish("sync.finished", server="home").id == 6
    again.close()
    assert store.query_one("SELECT MAX(id) AS id FROM events")["id"] == 6


def test_a_notify_rule_evaluated_by_the_daemon_sends_its_report(tmp_path):
    from smartplexd.daemon import Daemon

    receiver = Receiver()
    try:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "kept.yaml").write_text(
            "name: kept-review\ndescription: What the keep label protects\n"
            "when: {fact: plex.labels, contains: keep}\naction: {type: notify}\n"
        )
        (tmp_path / "config.yaml").write_text(
            json.dumps(
                {
                    "database": "./db.sqlite",
                    "rules": ["./rules"],
                    "notifications": [{"url": receiver.url("/r"), "events": ["rule.report"]}],
                }
            )
        )
        store = open_store(tmp_path / "db.sqlite")
        for i, labels in enumerate((["keep"], [], ["keep", "kids"]), start=1):
            store.execute(
                "INSERT INTO media_items (server, section_id, section_title, rating_key, type, title, size_bytes, "
                "labels) VALUES ('home', '1', 'Movies', ?, 'movie', ?, 2000000000, ?)",
                (str(i), f"Movie {i}", json.dumps(labels)),
            )
        daemon = Daemon(tmp_path / "config.yaml")
        daemon.jobs()["rules"]("kept-review")
        (report,) = receiver.received
        assert report["title"] == "kept-review: 2 items (4.0 GB)"
        assert "Movie 1" in report["message"] and "Movie 3" in report["message"] and "Movie 2" not in report["message"]
        # a report, not a deletion: nothing was planned for deletion
        assert store.query_one("SELECT COUNT(*) AS n FROM plan_items WHERE action != 'notify'")["n"] == 0
    finally:
        receiver.close()
