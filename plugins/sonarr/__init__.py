"""Sonarr integration: facts about shows, seasons and episodes, the Sonarr part of a deletion, restore,
health and webhooks.

Config (a list: several instances are allowed, e.g. an anime or 4K one)::

    integrations:
      sonarr:
        - {name: sonarr, url: http://sonarr:8989, api_key: ${SONARR_API_KEY}}

Shows match by tvdb id (then tmdb, then imdb). Seasons and episodes get their show's facts, except that
for them ``sonarr.monitored``, ``sonarr.size_on_disk`` and ``sonarr.episode_file_count`` describe their
*season* (from the series' season statistics: one catalogue request per run, never one per series or
episode). Several instances combine as described in :mod:`smartplexd_plugins.arr_common`.

Deleting a show deletes the series (with files, import-list exclusion optional). Deleting a season or an
episode deletes those episode files and unmonitors those episodes, so Sonarr does not fetch them again;
the series stays.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from smartplexd.config import Name
from smartplexd.model import (
    CascadeTarget,
    EnrichResult,
    FactDef,
    HealthResult,
    MediaItem,
    PluginContext,
    RestoreResult,
    StepResult,
    StepStatus,
    WebhookEvent,
)
from smartplexd.plugins import hookimpl
from smartplexd_plugins import arr_common, matching
from smartplexd_plugins.arr_common import ArrConfig, Catalogue
from smartplexd_plugins.matching import int_or_none, str_or_none, webhook_source_is
from smartplexd_plugins.servicehttp import ServiceClient, ServiceError

PLUGIN = "sonarr"
ORDER = 20
_KEYS = {"tvdb": "tvdbId", "tmdb": "tmdbId", "imdb": "imdbId"}


class SonarrConfig(ArrConfig):
    """One Sonarr instance."""

    name: Name = Field("sonarr", description="Instance name (unique), e.g. sonarr-anime; shown in facts and status.")


SonarrInstances = Annotated[list[SonarrConfig], AfterValidator(arr_common.unique_names)]


def _instances(ctx: PluginContext) -> list[SonarrConfig]:
    return list(ctx.section(PLUGIN) or [])


@hookimpl
def smartplexd_config_model() -> tuple[str, Any]:
    return PLUGIN, SonarrInstances


@hookimpl
def smartplexd_facts() -> list[FactDef]:
    return [
        FactDef("sonarr.status", "str", "Series status in Sonarr: continuing, ended, upcoming or deleted."),
        FactDef(
            "sonarr.monitored",
            "bool",
            "Sonarr monitors the series (for a season or episode: the series and that season are monitored).",
        ),
        FactDef(
            "sonarr.size_on_disk",
            "size",
            "Bytes of the series' files in Sonarr (for a season or episode: of that season).",
            "bytes",
        ),
        FactDef(
            "sonarr.episode_file_count",
            "int",
            "Episode files Sonarr has for the series (for a season or episode: of that season).",
        ),
        FactDef("sonarr.tags", "list", "Sonarr tag labels on the series (union over instances)."),
        FactDef("sonarr.added", "datetime", "When the series was added to Sonarr (earliest instance)."),
        FactDef("sonarr.quality_profile", "str", "Quality profile name in the first instance holding the series."),
        FactDef("sonarr.instance", "str", "Name of the first configured Sonarr instance holding the series."),
        FactDef("sonarr.instances", "list", "Names of every Sonarr instance holding the series."),
    ]


# ----------------------------------------------------------------------------------------- enrich


def _keys(guids: matching.Guids) -> list[tuple[str, Any]]:
    return [("tvdb", guids.tvdb), ("tmdb", guids.tmdb), ("imdb", guids.imdb)]


def _season(series: dict[str, Any], number: int | None) -> dict[str, Any] | None:
    for season in series.get("seasons") or []:
        if season.get("seasonNumber") == number:
            return season
    return None


def _facts(item: MediaItem, matches: list[tuple[Catalogue, dict[str, Any]]]) -> dict[str, Any]:
    facts = arr_common.combine(matches, PLUGIN)
    facts["sonarr.status"] = matches[0][1].get("status")
    if item.type == "show":
        stats = [s.get("statistics") or {} for _, s in matches]
        facts["sonarr.size_on_disk"] = sum(int(st.get("sizeOnDisk") or 0) for st in stats)
        facts["sonarr.episode_file_count"] = sum(int(st.get("episodeFileCount") or 0) for st in stats)
        return facts
    if item.season_index is None:
        # Without a season number the season-level values cannot be told; leave them out (absent)
        # rather than report the whole series' size for one episode.
        return facts
    seasons = [(s, _season(s, item.season_index)) for _, s in matches]
    facts["sonarr.monitored"] = any(bool(s.get("monitored")) and bool(se and se.get("monitored")) for s, se in seasons)
    stats = [(se or {}).get("statistics") or {} for _, se in seasons]
    facts["sonarr.size_on_disk"] = sum(int(st.get("sizeOnDisk") or 0) for st in stats)
    facts["sonarr.episode_file_count"] = sum(int(st.get("episodeFileCount") or 0) for st in stats)
    return facts


@hookimpl
async def smartplexd_enrich(items: list[MediaItem], ctx: PluginContext) -> EnrichResult | None:
    instances = _instances(ctx)
    if not instances:
        return None
    found, failed = await arr_common.catalogues(ctx, PLUGIN, instances, "/series", _KEYS)
    if failed:
        return EnrichResult(PLUGIN, complete=False, error="; ".join(str(e) for e in failed))
    batch_shows = matching.batch_show_guids(items)
    facts: dict[int, dict[str, Any]] = {}
    # Every episode of a show matches the same series: look each show up once per batch, and give a
    # season and its episodes one shared (read-only) facts dict.
    by_show: dict[tuple[str, str | None], list[tuple[Catalogue, dict[str, Any]]]] = {}
    by_season: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
    for item in items:
        if item.type not in ("show", "season", "episode"):
            continue
        key = (item.server, matching.show_key(item))
        matches = by_show.get(key)
        if matches is None:
            guids = matching.guids_for(item, ctx, batch_shows)
            matches = arr_common.lookup(found, _keys(guids)) if guids else []
            by_show[key] = matches
        if not matches:
            continue
        if item.type == "show":
            facts[item.id] = _facts(item, arr_common.narrow_by_folder(item.files, matches))
            continue
        season_key = (*key, item.season_index)
        shared = by_season.get(season_key)
        if shared is None:
            shared = by_season[season_key] = _facts(item, matches)
        facts[item.id] = shared
    return EnrichResult(PLUGIN, facts)


# ---------------------------------------------------------------------------------------- cascade


def _snapshot(series: dict[str, Any], catalogue: Catalogue | None) -> dict[str, Any]:
    return {
        "tvdbId": series.get("tvdbId"),
        "tmdbId": series.get("tmdbId"),
        "imdbId": series.get("imdbId"),
        "title": series.get("title"),
        "year": series.get("year"),
        "qualityProfileId": series.get("qualityProfileId"),
        "rootFolderPath": series.get("rootFolderPath"),
        "path": series.get("path"),
        "monitored": series.get("monitored"),
        "seasonFolder": series.get("seasonFolder", True),
        "seriesType": series.get("seriesType", "standard"),
        "tags": list(series.get("tags") or []),
        "tagLabels": catalogue.tag_labels(series) if catalogue else [],
        "seasons": [
            {"seasonNumber": s.get("seasonNumber"), "monitored": s.get("monitored")}
            for s in series.get("seasons") or []
        ],
    }


async def _episodes(c: ServiceClient, series_id: int, season: int | None, episode: int | None) -> list[dict[str, Any]]:
    """The episodes a season/episode item stands for, with their files."""
    params: dict[str, Any] = {"seriesId": series_id, "includeEpisodeFile": "true"}
    if season is not None:
        params["seasonNumber"] = season
    episodes = await c.get_json("/episode", params)
    return [
        e
        for e in episodes
        if (season is None or e.get("seasonNumber") == season)
        and (episode is None or e.get("episodeNumber") == episode)
    ]


@hookimpl
async def smartplexd_cascade_targets(item: MediaItem, facts: dict[str, Any], ctx: PluginContext) -> list[CascadeTarget]:
    """Per instance holding the show: ``delete``/``unmonitor`` the series for a show item,
    ``delete_episodes``/``unmonitor_episodes`` for a season or episode item (ids resolved now). An
    instance that cannot be asked now still gets a step, resolved when it runs."""
    instances = _instances(ctx)
    if item.type not in ("show", "season", "episode") or not instances:
        return []
    guids = matching.guids_for(item, ctx, matching.batch_show_guids([item]))
    if guids is None:
        return []
    unmonitor = ctx.rule_action == "unmonitor"
    whole = item.type == "show"
    action = (
        ("unmonitor" if unmonitor else "delete")
        if whole
        else ("unmonitor_episodes" if unmonitor else "delete_episodes")
    )
    season = item.season_index if not whole else None
    episode = item.episode_index if item.type == "episode" else None
    found, failed = await arr_common.catalogues(ctx, PLUGIN, instances, "/series", _KEYS)
    matches = arr_common.lookup(found, _keys(guids))
    if whole:
        matches = arr_common.narrow_by_folder(item.files, matches)
    targets = []
    for instance, match in arr_common.step_instances(instances, matches, failed):
        base = {
            "instance": instance.name,
            "tvdb_id": guids.tvdb,
            "title": item.title,
            "season_number": season,
            "episode_number": episode,
            "delete_files": instance.delete_files,
            "add_import_list_exclusion": instance.add_import_exclusion,
        }
        if match is not None:
            catalogue, series = match
            data = base | {
                "series_id": series["id"],
                "tvdb_id": series.get("tvdbId"),
                "snapshot": _snapshot(series, catalogue),
            }
            if whole:
                data["size"] = int((series.get("statistics") or {}).get("sizeOnDisk") or 0)
            else:
                try:
                    async with arr_common.client(instance) as c:
                        episodes = await _episodes(c, series["id"], season, episode)
                except ServiceError:
                    episodes = None  # resolved when the step runs
                if episodes is not None:
                    data["episode_ids"] = [e["id"] for e in episodes]
                    data["episode_file_ids"] = [e["episodeFileId"] for e in episodes if e.get("episodeFileId")]
                    data["size"] = sum(int((e.get("episodeFile") or {}).get("size") or 0) for e in episodes)
                    data["snapshot"]["episodes"] = [{"id": e["id"], "monitored": e.get("monitored")} for e in episodes]
        else:
            data = base | {"series_id": None, "unresolved": True}
        targets.append(CascadeTarget(PLUGIN, instance.name, ORDER, action, data))
    return targets


async def _find_series(c: ServiceClient, data: dict[str, Any]) -> dict[str, Any] | None:
    """The series the step is about, by id (checked against its tvdb id) or, unresolved, by tvdb id."""
    return await arr_common.find_resource(c, "/series", data.get("series_id"), "tvdbId", data.get("tvdb_id"))


async def _delete_episodes(c: ServiceClient, series: dict[str, Any], target: CascadeTarget) -> StepResult:
    data = target.data
    if data.get("episode_ids"):
        params = [("episodeIds", i) for i in data["episode_ids"]]
        episodes = await c.get_json("/episode", params)  # type: ignore[arg-type]
    else:
        episodes = await _episodes(c, series["id"], data.get("season_number"), data.get("episode_number"))
    if not episodes:
        return StepResult(StepStatus.DONE, f"{target.target} no longer has those episodes", already_gone=True)
    deleted = 0
    # Files are looked up now, not at intent time: an upgrade since then gave the episode a new file id.
    if target.action == "delete_episodes":
        for file_id in sorted({e["episodeFileId"] for e in episodes if e.get("episodeFileId")}):
            if await arr_common.delete_or_gone(c, f"/episodefile/{file_id}"):
                deleted += 1
    monitored = [e["id"] for e in episodes if e.get("monitored")]
    if monitored:
        await c.request("PUT", "/episode/monitor", json={"episodeIds": monitored, "monitored": False})
    what = f"season {data.get('season_number')}" if data.get("episode_number") is None else (
        f"S{data.get('season_number')}E{data.get('episode_number')}"
    )  # fmt: skip
    if not deleted and not monitored:
        return StepResult(StepStatus.DONE, f"{series['title']} {what}: nothing left to do", already_gone=True)
    return StepResult(
        StepStatus.DONE,
        f"{series['title']} {what}: deleted {deleted} episode file(s), unmonitored {len(monitored)} episode(s)"
        f" in {target.target}",
        details={"series_id": series["id"], "files_deleted": deleted, "unmonitored": len(monitored)},
    )


@hookimpl
async def smartplexd_cascade_step(item: MediaItem, target: CascadeTarget, ctx: PluginContext) -> StepResult | None:
    if target.plugin != PLUGIN:
        return None
    instance = arr_common.find_instance(_instances(ctx), target.target)
    data = target.data

    async def step(c: ServiceClient) -> StepResult:
        series = await _find_series(c, data)
        if series is None:
            return StepResult(StepStatus.DONE, f"{target.target} no longer has {data.get('title')}", already_gone=True)
        if target.action in ("delete_episodes", "unmonitor_episodes"):
            return await _delete_episodes(c, series, target)
        if target.action == "unmonitor":
            return await arr_common.unmonitor(c, "/series", series, target.target)
        size = int((series.get("statistics") or {}).get("sizeOnDisk") or 0)
        delete_files = bool(data.get("delete_files", True))
        params = {
            "deleteFiles": arr_common.api_bool(delete_files),
            "addImportListExclusion": arr_common.api_bool(bool(data.get("add_import_list_exclusion", False))),
        }
        if not await arr_common.delete_or_gone(c, f"/series/{series['id']}", params):
            return StepResult(StepStatus.DONE, f"{target.target} no longer has {series['title']}", already_gone=True)
        return StepResult(
            StepStatus.DONE,
            f"deleted {series['title']} from {target.target} "
            + ("with its files" if delete_files else "keeping its files"),
            details={"series_id": series["id"], "bytes_freed": size if delete_files else 0},
        )

    return await arr_common.run_step(instance, target.target, step)


# ---------------------------------------------------------------------------------------- restore


@hookimpl
async def smartplexd_restore(
    deletion: dict[str, Any], target: CascadeTarget, ctx: PluginContext
) -> RestoreResult | None:
    """Re-add a deleted series by tvdb id (old quality profile and root folder, monitored, search for
    missing episodes); for season/episode steps and ``unmonitor``, monitor again and search."""
    if target.plugin != PLUGIN:
        return None
    instance = arr_common.find_instance(_instances(ctx), target.target)
    data = target.data
    snap = data.get("snapshot") or {}
    tvdb_id = snap.get("tvdbId") or data.get("tvdb_id")

    async def restore(c: ServiceClient) -> RestoreResult:
        if target.action != "delete":
            series = await _find_series(c, {"series_id": data.get("series_id"), "tvdb_id": tvdb_id})
            if series is None:
                return RestoreResult(target.target, False, f"{target.target} no longer has tvdb {tvdb_id}")
            if target.action == "unmonitor":
                await c.request("PUT", f"/series/{series['id']}", json={**series, "monitored": True})
                await c.request("POST", "/command", json={"name": "SeriesSearch", "seriesId": series["id"]})
                return RestoreResult(target.target, True, f"monitoring {series['title']} again and searching")
            ids = data.get("episode_ids") or [
                e["id"] for e in await _episodes(c, series["id"], data.get("season_number"), data.get("episode_number"))
            ]
            await c.request("PUT", "/episode/monitor", json={"episodeIds": ids, "monitored": True})
            await c.request("POST", "/command", json={"name": "EpisodeSearch", "episodeIds": ids})
            return RestoreResult(
                target.target, True, f"monitoring {len(ids)} episode(s) of {series['title']} again and searching"
            )
        body = {
            "tvdbId": tvdb_id,
            "title": snap.get("title") or data.get("title"),
            "year": snap.get("year"),
            "qualityProfileId": snap.get("qualityProfileId"),
            "rootFolderPath": snap.get("rootFolderPath"),
            "monitored": True,
            "seasonFolder": snap.get("seasonFolder", True),
            "seriesType": snap.get("seriesType") or "standard",
            "tags": snap.get("tags") or [],
            "addOptions": {"monitor": "all", "searchForMissingEpisodes": True},
        }
        added = await arr_common.add_or_held(c, "/series", body)
        if added is None:
            return RestoreResult(target.target, True, f"tvdb {tvdb_id} is already in {target.target}")
        return RestoreResult(
            target.target,
            True,
            f"re-added {added.get('title')} to {target.target} (monitored, searching for missing episodes)",
            details={"series_id": added.get("id")},
        )

    no_tvdb = "no tvdb id was recorded for this series; add it in Sonarr by hand"
    return await arr_common.run_restore(instance, target.target, tvdb_id, no_tvdb, restore)


# ----------------------------------------------------------------------------------------- health


@hookimpl
async def smartplexd_health(ctx: PluginContext) -> list[HealthResult]:
    return list(await asyncio.gather(*(arr_common.health(i, PLUGIN) for i in _instances(ctx))))


# ---------------------------------------------------------------------------------------- webhook


@hookimpl
def smartplexd_webhook(source: str, payload: dict[str, Any], ctx: PluginContext) -> list[WebhookEvent] | None:
    """Sonarr Connect → Webhook: Download = item.added, SeriesDelete / EpisodeFileDelete (not for an
    upgrade) = item.deleted_upstream, Test = test; everything else is stored as unknown."""
    if not webhook_source_is(source, PLUGIN, ctx):
        return None
    kind = str(payload.get("eventType") or "")
    series = payload.get("series") if isinstance(payload.get("series"), dict) else {}
    episodes = [e for e in payload.get("episodes") or [] if isinstance(e, dict)]
    etype, deletion = arr_common.webhook_event(kind, payload, "SeriesDelete", "EpisodeFileDelete")
    details: dict[str, Any] = {
        "event_type": kind,
        "instance": payload.get("instanceName"),
        "title": series.get("title"),
        "episodes": [{"season": e.get("seasonNumber"), "episode": e.get("episodeNumber")} for e in episodes],
    }
    details.update(deletion)
    if kind == "Health":
        details["message"] = payload.get("message")
        details["level"] = payload.get("level")
    return [
        WebhookEvent(
            etype,
            PLUGIN,
            tvdb_id=int_or_none(series.get("tvdbId")),
            tmdb_id=int_or_none(series.get("tmdbId")),
            imdb_id=str_or_none(series.get("imdbId")),
            details=details,
        )
    ]
