"""One deterministic media universe that every simulated server renders its own view of.

A real homelab has one set of films and shows that Plex, Radarr, Sonarr, Overseerr and Tautulli each see
a part of: the same tmdb/tvdb/imdb ids, the same files, the same watch history. The simulated servers in
this package are built from one :class:`Universe` so that matching by GUID works across them exactly as
it does against real servers, and so that a test can say "movie 17 is in Radarr's 4K instance, requested
by alice and watched by bob" and find it true everywhere.

Everything is derived from ``seed``: the same arguments always give the same universe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DAY = 86_400

USERS = ("admin", "alice", "bob", "carol", "dave")
"""Plex accounts that appear in Tautulli history and Overseerr requests. ``admin`` owns the Plex token."""

_WORDS = [
    "Silent",
    "Echo",
    "Midnight",
    "Harbor",
    "Crimson",
    "River",
    "Paper",
    "Moon",
    "Iron",
    "Garden",
    "Lost",
    "Signal",
    "Hollow",
    "Crown",
    "Glass",
    "Kingdom",
    "Northern",
    "Lights",
    "Broken",
    "Compass",
    "Winter",
    "Station",
    "Golden",
    "Hour",
    "Last",
    "Orbit",
    "Quiet",
    "Storm",
    "Velvet",
    "Machine",
    "Distant",
    "Shore",
    "Electric",
    "Desert",
    "Secret",
    "Archive",
    "Falling",
    "Sky",
    "Burning",
    "Bridge",
    "Open",
    "Road",
    "Shadow",
    "Protocol",
    "Wild",
    "Frontier",
    "Hidden",
    "Valley",
    "Steel",
    "Horizon",
    "Ember",
    "Tide",
    "Neon",
    "City",
    "Frozen",
    "Lake",
    "Black",
    "Meridian",
]

QUALITY_PROFILES = {1: "Any", 4: "HD-1080p", 5: "Ultra-HD"}


@dataclass(slots=True)
class View:
    """One play of an item by one user (what Tautulli records)."""

    user: str
    at: int  # epoch seconds when the play stopped
    percent_complete: int
    duration: int  # seconds actually watched


@dataclass(slots=True)
class Request:
    """An Overseerr request for a movie or a whole show."""

    id: int
    user: str
    status: int  # Overseerr MediaRequestStatus: 1 pending, 2 approved, 3 declined, 4 failed, 5 completed
    created_at: int


@dataclass(slots=True)
class Episode:
    rating_key: int
    index: int
    title: str
    size: int
    added_at: int
    file: str
    views: list[View] = field(default_factory=list)


@dataclass(slots=True)
class Season:
    rating_key: int
    index: int
    episodes: list[Episode] = field(default_factory=list)


@dataclass(slots=True)
class Movie:
    rating_key: int
    title: str
    year: int
    tmdb: int
    imdb: str
    size: int
    added_at: int
    file: str
    labels: list[str]
    collections: list[str]
    views: list[View]
    radarr: str | None  # name of the Radarr instance holding it ("radarr", "radarr4k") or None
    monitored: bool
    tags: list[str]
    quality_profile_id: int
    request: Request | None


@dataclass(slots=True)
class Show:
    rating_key: int
    title: str
    year: int
    tvdb: int
    tmdb: int
    imdb: str
    added_at: int
    status: str  # Sonarr: "continuing" | "ended"
    labels: list[str]
    collections: list[str]
    seasons: list[Season]
    sonarr: str | None
    monitored: bool
    tags: list[str]
    quality_profile_id: int
    request: Request | None

    @property
    def episodes(self) -> list[Episode]:
        return [e for s in self.seasons for e in s.episodes]

    @property
    def size(self) -> int:
        return sum(e.size for s in self.seasons for e in s.episodes)


@dataclass(slots=True)
class Universe:
    now: int
    movies: list[Movie]
    shows: list[Show]
    machine_identifier: str

    @property
    def plex_item_count(self) -> int:
        """Movies + shows + seasons + episodes: the rows a full sync mirrors."""
        n = len(self.movies) + len(self.shows)
        for show in self.shows:
            n += len(show.seasons) + sum(len(s.episodes) for s in show.seasons)
        return n


def _title(rng: random.Random, n: int) -> str:
    return f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {n}"


def _views(rng: random.Random, added_at: int, now: int, duration: int) -> list[View]:
    """0-4 plays after the item was added; some partial. Sorted by time."""
    out: list[View] = []
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3, 4))):
        at = rng.randint(added_at, max(added_at, now - 3600))
        pct = rng.choice((100, 100, 100, 95, 60, 20))
        out.append(View(rng.choice(USERS), at, pct, duration * pct // 100))
    out.sort(key=lambda v: v.at)
    return out


def generate(
    seed: int = 42,
    movies: int = 200,
    shows: int = 20,
    seasons_per_show: int = 3,
    episodes_per_season: int = 8,
    now: int | None = None,
) -> Universe:
    """Build a universe. ``now`` anchors every date (default: the current time, rounded to the hour)."""
    import time

    rng = random.Random(seed)
    now = now if now is not None else int(time.time()) // 3600 * 3600
    rating_key = 1000
    request_id = 0

    def next_key() -> int:
        nonlocal rating_key
        rating_key += 1
        return rating_key

    def maybe_request(added_at: int) -> Request | None:
        nonlocal request_id
        if rng.random() >= 0.3:
            return None
        request_id += 1
        status = rng.choice((1, 2, 2, 2, 3, 5))
        return Request(request_id, rng.choice(USERS[1:]), status, max(0, added_at - rng.randint(0, 5) * DAY))

    out_movies: list[Movie] = []
    for i in range(movies):
        added = now - rng.randint(1, 5 * 365) * DAY
        in_radarr = rng.random() < 0.85
        instance = ("radarr4k" if rng.random() < 0.1 else "radarr") if in_radarr else None
        title = _title(rng, i)
        year = rng.randint(1960, 2025)
        out_movies.append(
            Movie(
                rating_key=next_key(),
                title=title,
                year=year,
                tmdb=100_000 + i,
                imdb=f"tt{1_000_000 + i:07d}",
                size=rng.randint(700, 60_000) * 1_048_576,
                added_at=added,
                file=f"/data/movies/{title} ({year})/{title} ({year}).mkv",
                labels=["keep"] if rng.random() < 0.05 else [],
                collections=["Favourites"] if rng.random() < 0.03 else [],
                views=_views(rng, added, now, 6000),
                radarr=instance,
                monitored=rng.random() < 0.8,
                tags=["kids"] if rng.random() < 0.1 else [],
                quality_profile_id=5 if instance == "radarr4k" else rng.choice((1, 4)),
                request=maybe_request(added),
            )
        )

    out_shows: list[Show] = []
    for i in range(shows):
        added = now - rng.randint(30, 6 * 365) * DAY
        show_key = next_key()
        seasons: list[Season] = []
        title = f"{_title(rng, i)} Show"
        for s in range(1, seasons_per_show + 1):
            season = Season(rating_key=next_key(), index=s)
            for e in range(1, episodes_per_season + 1):
                ep_added = added + (s - 1) * 90 * DAY + e * DAY
                ep_added = min(ep_added, now - DAY)
                season.episodes.append(
                    Episode(
                        rating_key=next_key(),
                        index=e,
                        title=f"Episode {e}",
                        size=rng.randint(200, 4_000) * 1_048_576,
                        added_at=ep_added,
                        file=f"/data/tv/{title}/Season {s:02d}/{title} - S{s:02d}E{e:02d}.mkv",
                        views=_views(rng, ep_added, now, 2700),
                    )
                )
            seasons.append(season)
        in_sonarr = rng.random() < 0.9
        out_shows.append(
            Show(
                rating_key=show_key,
                title=title,
                year=rng.randint(1990, 2025),
                tvdb=300_000 + i,
                tmdb=500_000 + i,
                imdb=f"tt{5_000_000 + i:07d}",
                added_at=added,
                status=rng.choice(("continuing", "ended", "ended")),
                labels=["keep"] if rng.random() < 0.05 else [],
                collections=[],
                seasons=seasons,
                sonarr="sonarr" if in_sonarr else None,
                monitored=rng.random() < 0.7,
                tags=[],
                quality_profile_id=rng.choice((1, 4)),
                request=maybe_request(added),
            )
        )

    machine = f"{rng.getrandbits(160):040x}"
    return Universe(now=now, movies=out_movies, shows=out_shows, machine_identifier=machine)
