"""The status page in real headless Chromium while smartplexd syncs a simulated Plex with latency.

The sync is the real one (:func:`smartplexd.plex.sync.sync_server`) against the simulated PMS over HTTP;
the page is served by the status and SSE handlers on 127.0.0.1. We poll the DOM and see the progress bar
move, the upcoming deletions with their reasons and due dates, nothing but GET requests, no secret, and a
layout that fits a phone. The screenshot taken mid-sync is docs/status-page.png (rewritten when
SMARTPLEXD_UPDATE_SCREENSHOT=1).

Needs Debian's chromium at /usr/bin/chromium (never downloaded). Without it these tests FAIL, unless
SMARTPLEXD_SKIP_BROWSER=1 says this machine cannot run a browser.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from demo_process import DemoProcess
from status_seed import SECRETS, seed, write_config

from smartplexd import events
from smartplexd.config import AppConfig
from smartplexd.demo import plex as plex_sim
from smartplexd.demo.faults import Faults
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.plex.sync import SyncResult, sync_server
from smartplexd.store import open_store
from smartplexd.web import BUS, CONFIG, DB_PATH
from smartplexd.web import sse as sse_web
from smartplexd.web import status as status_web

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"
# The committed screenshot is rewritten only on request, so test runs do not leave the tree modified.
UPDATE_SCREENSHOT = os.environ.get("SMARTPLEXD_UPDATE_SCREENSHOT") == "1" or not DOCS_SCREENSHOT.exists()
MOVIES = 1000  # 20 pages of 50 at 0.15 s each: a sync of a few seconds, long enough to watch


def _chromium_args() -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("SMARTPLEXD_SKIP_BROWSER") == "1":
            pytest.skip("SMARTPLEXD_SKIP_BROWSER=1 and no chromium at /usr/bin/chromium")
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or set SMARTPLEXD_SKIP_BROWSER=1)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=_chromium_args())
        yield b
        b.close()


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        universe = generate(seed=7, movies=MOVIES, shows=4, seasons_per_show=2, episodes_per_season=4)
        self.plex = ThreadedServer(
            plex_sim.create_app(universe, token=SECRETS["plex_home"], faults=Faults(latency=0.15))
        ).start()
        self.config: AppConfig = write_config(tmp_path, plex_url=self.plex.url, heartbeat=5)
        store = open_store(self.config.database_path)
        self.ids = seed(store, time.time())
        store.close()
        app = web.Application()
        app[CONFIG], app[DB_PATH], app[BUS] = self.config, str(self.config.database_path), events.bus
        status_web.setup(app)
        sse_web.setup(app)
        self.web = ThreadedServer(app).start()
        self.result: SyncResult | None = None
        self.thread = threading.Thread(target=self._sync, name="sync-home")

    def _sync(self) -> None:
        store = open_store(self.config.database_path)  # a store of this thread's own
        try:
            self.result = sync_server(self.config, store, "home", libraries=["Movies"])
        finally:
            store.close()

    def close(self) -> None:
        self.thread.join(timeout=60) if self.thread.is_alive() else None
        self.web.stop()
        self.plex.stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    s.close()


def _bar(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const box = document.querySelector('.sync[data-server="home"]');
            const bar = box.querySelector('progress');
            return {hidden: box.hidden, value: bar.value, max: bar.max,
                    text: box.querySelector('.sync-text').textContent};
        }"""
    )


def test_progress_bar_moves_during_a_real_sync(browser: Any, setup: Setup, tmp_path: Path) -> None:
    screenshot = DOCS_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "status-page.png"
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    methods: list[str] = []
    page.on("request", lambda request: methods.append(request.method))
    page.goto(setup.web.url + "/")
    page.wait_for_selector('#live[data-live="on"]', timeout=10_000)
    assert _bar(page)["hidden"] is True  # no sync running yet

    setup.thread.start()
    samples: list[dict[str, Any]] = []
    screenshot_taken = False
    deadline = time.monotonic() + 60
    while setup.thread.is_alive() and time.monotonic() < deadline:
        try:
            sample = _bar(page)
        except Exception:  # the page reloads itself after sync.finished
            break
        if not sample["hidden"]:
            samples.append(sample)
            if not screenshot_taken and 0.3 * MOVIES <= sample["value"] <= 0.7 * MOVIES:
                screenshot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                screenshot_taken = True
        time.sleep(0.1)
    setup.thread.join(timeout=60)

    assert setup.result is not None and setup.result.status == "ok", setup.result
    values = [s["value"] for s in samples]
    assert len(set(values)) >= 3, values  # it visibly moved, more than once
    assert values == sorted(values)  # and never went backwards
    assert samples[-1]["max"] == MOVIES and values[-1] > values[0]
    assert any("ETA" in s["text"] and "Movies" in s["text"] for s in samples)
    assert screenshot_taken and screenshot.stat().st_size < 400_000

    # After sync.finished the page reloads itself and shows the finished sync.
    page.wait_for_function(
        "() => document.querySelector('.server[data-server=\"home\"] p').textContent.includes('1,000 items')"
        " || document.querySelector('.server[data-server=\"home\"] p').textContent.includes('1000 items')",
        timeout=10_000,
    )
    assert set(methods) == {"GET"}  # read-only: nothing but GETs, however long it ran


def test_leaving_soon_shows_reasons_and_due_dates(browser: Any, setup: Setup) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(setup.web.url + "/")
    rows = page.locator("#leaving-soon tbody tr")
    assert rows.count() == 3
    first = rows.nth(0).inner_text()
    assert "Crimson Orbit 12 (2011)" in first and "Never watched, added 3 years ago" in first
    assert "in 2d" in first  # due in two days
    second = rows.nth(1).inner_text()
    assert "Silent Harbor 7 (1999)" in second
    assert "plex.view_count >= 1 (is 3)" in second and "plex.last_viewed_at older than 90d" in second
    assert "in 5d" in second
    due = rows.nth(1).locator("td.due time").get_attribute("datetime")
    assert due and due.startswith(time.strftime("%Y-", time.localtime(setup.ids["due_a"])))
    html = page.content()
    for secret in SECRETS.values():
        assert secret not in html


def test_fits_a_phone(browser: Any, setup: Setup) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.goto(setup.web.url + "/")
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width  # no sideways scrolling
    # Table rows become labelled cards: the column name is shown next to each value.
    label = page.locator("#leaving-soon td.due").first.evaluate("el => getComputedStyle(el, '::before').content")
    assert "Due" in label


def test_status_page_of_smartplexd_demo_during_its_first_sync(browser: Any, tmp_path: Path) -> None:
    """The user's story: run `smartplexd demo`, open the printed URL, watch the first sync progress."""
    demo = DemoProcess(tmp_path / "demo-data", "--movies", "1500", "--shows", "2", "--latency", "0.3")
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        methods: list[str] = []
        page.on("request", lambda request: methods.append(request.method))
        page.goto(demo.url)
        page.wait_for_selector('#live[data-live="on"]', timeout=10_000)
        movies: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                sample = _bar(page)
            except Exception:  # reloading after sync.finished
                break
            if not sample["hidden"] and "Movies" in sample["text"]:
                movies.append(sample["value"])
            if movies and movies[-1] == 1500:
                break
            time.sleep(0.1)
        assert len(set(movies)) >= 3, movies
        assert movies == sorted(movies) and movies[-1] == 1500
        page.wait_for_function(
            "() => document.querySelector('.server[data-server=\"home\"] p').textContent.includes('Last sync')",
            timeout=20_000,
        )
        assert set(methods) == {"GET"}
        assert demo.admin_token not in page.content()
    finally:
        assert demo.stop() == 0, "".join(demo.err)
