"""Radarr integration: facts about movies, the Radarr part of a deletion, restore, health, webhooks.

Config (a list: several instances, e.g. a 4K one)::

    integrations:
      radarr:
        - {name: radarr, url: http://radarr:7878, api_key: ${RADARR_API_KEY}}
        - {name: radarr4k, url: http://radarr4k:7878, api_key: ${RADARR4K_API_KEY}, add_import_exclusion: true}

Movies match by tmdb id, then imdb id. A movie held by several instances gets combined facts (see
:mod:`smartplexd_plugins.arr_common`): ``radarr.size_on_disk`` is the sum, ``radarr.monitored`` is true if
any instance monitors it, ``radarr.instance`` is the first instance in config order and
``radarr.instances`` lists all of them. Its deletion has one cascade step per instance.
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
from smartplexd_plugins import arr_common
from smartplexd_plugins.arr_common import ArrConfig, Catalogue
from smartplexd_plugins.matching import epoch, int_or_none, str_or_none, webhook_source_is
from smartplexd_plugins.servicehttp import ServiceClient

PLUGIN = "radarr"
ORDER = 20
_KEYS = {"tmdb": "tmdbId", "imdb": "imdbId"}


class RadarrConfig(ArrConfig):
    """One Radarr instance."""

    name: Name = Field("radarr", description="Instance name (unique), e.g. radarr4k; shown in facts and status.")


RadarrInstances = Annotated[list[RadarrConfig], AfterValidator(arr_common.unique_names)]


def _instances(ctx: PluginContext) -> list[RadarrConfig]:
    return list(ctx.section(PLUGIN) or [])


@hookimpl
def smartplexd_config_model() -> tuple[str, Any]:
    return PLUGIN, RadarrInstances


@hookimpl
def smartplexd_facts() -> list[FactDef]:
    return [
        FactDef("radarr.monitored", "bool", "Radarr monitors the movie (any instance, when several hold it)."),
        FactDef(
            "radarr.size_on_disk", "size", "Bytes of the movie's files in Radarr (summed over instances).", "bytes"
        ),
        FactDef("radarr.has_file", "bool", "Radarr has a file for the movie (any instance)."),
        FactDef("radarr.tags", "list", "Radarr tag labels on the movie (union over instances)."),
        FactDef("radarr.added", "datetime", "When the movie was added to Radarr (earliest instance)."),
        FactDef("radarr.quality_profile", "str", "Quality profile name in the first instance holding the movie."),
        FactDef("radarr.instance", "str", "Name of the first configured Radarr instance holding the movie."),
        FactDef(
            "radarr.instances", "list", "Names of every Radarr instance holding the movie (e.g. radarr, radarr4k)."
        ),
    ]


# ----------------------------------------------------------------------------------------- enrich


def _keys(item: MediaItem) -> list[tuple[str, Any]]:
    return [("tmdb", item.tmdb_id), ("imdb", item.imdb_id)]


def _facts(matches: list[tuple[Catalogue, dict[str, Any]]]) -> dict[str, Any]:
    facts = arr_common.combine(matches, PLUGIN)
    facts["radarr.size_on_disk"] = sum(int(m.get("sizeOnDisk") or 0) for _, m in matches)
    facts["radarr.has_file"] = any(bool(m.get("hasFile")) for _, m in matches)
    return facts


@hookimpl
async def smartplexd_enrich(items: list[MediaItem], ctx: PluginContext) -> EnrichResult | None:
    instances = _instances(ctx)
    if not instances:
        return None
    found, failed = await arr_common.catalogues(ctx, PLUGIN, instances, "/movie", _KEYS)
    if failed:
        return EnrichResult(PLUGIN, complete=False, error="; ".join(str(e) for e in failed))
    facts: dict[int, dict[str, Any]] = {}
    for item in items:
        if item.type != "movie":
            continue
        matches = arr_common.narrow_by_folder(item.files, arr_common.lookup(found, _keys(item)))
        if matches:
            facts[item.id] = _facts(matches)
    return EnrichResult(PLUGIN, facts)


# ---------------------------------------------------------------------------------------- cascade


def _snapshot(movie: dict[str, Any], catalogue: Catalogue | None) -> dict[str, Any]:
    return {
        "tmdbId": movie.get("tmdbId"),
        "imdbId": movie.get("imdbId"),
        "title": movie.get("title"),
        "year": movie.get("year"),
        "qualityProfileId": movie.get("qualityProfileId"),
        "rootFolderPath": movie.get("rootFolderPath"),
        "path": movie.get("path"),
        "monitored": movie.get("monitored"),
        "minimumAvailability": movie.get("minimumAvailability"),
        "tags": list(movie.get("tags") or []),
        "tagLabels": catalogue.tag_labels(movie) if catalogue else [],
    }


@hookimpl
async def smartplexd_cascade_targets(item: MediaItem, facts: dict[str, Any], ctx: PluginContext) -> list[CascadeTarget]:
    """One step per instance holding the movie. An instance that cannot be asked now still gets a step
    (ids resolved when it runs), so a movie is never left behind in an instance that was briefly down."""
    instances = _instances(ctx)
    if item.type != "movie" or not instances:
        return []
    action = "unmonitor" if ctx.rule_action == "unmonitor" else "delete"
    found, failed = await arr_common.catalogues(ctx, PLUGIN, instances, "/movie", _KEYS)
    matches = arr_common.narrow_by_folder(item.files, arr_common.lookup(found, _keys(item)))
    targets = []
    for instance, match in arr_common.step_instances(instances, matches, failed):
        base = {
            "instance": instance.name,
            "tmdb_id": item.tmdb_id,
            "imdb_id": item.imdb_id,
            "title": item.title,
            "delete_files": instance.delete_files,
            "add_import_exclusion": instance.add_import_exclusion,
        }
        if match is not None:
            catalogue, movie = match
            data = base | {
                "movie_id": movie["id"],
                "tmdb_id": movie.get("tmdbId"),
                "size": int(movie.get("sizeOnDisk") or 0),
                "snapshot": _snapshot(movie, catalogue),
            }
        else:
            data = base | {"movie_id": None, "unresolved": True}
        targets.append(CascadeTarget(PLUGIN, instance.name, ORDER, action, data))
    return targets


async def _find_movie(c: ServiceClient, data: dict[str, Any]) -> dict[str, Any] | None:
    """The movie the step is about, by id (checked against its tmdb id) or, unresolved, by tmdb id."""
    return await arr_common.find_resource(c, "/movie", data.get("movie_id"), "tmdbId", data.get("tmdb_id"))


@hookimpl
async def smartplexd_cascade_step(item: MediaItem, target: CascadeTarget, ctx: PluginContext) -> StepResult | None:
    if target.plugin != PLUGIN:
        return None
    instance = arr_common.find_instance(_instances(ctx), target.target)
    data = target.data

    async def step(c: ServiceClient) -> StepResult:
        movie = await _find_movie(c, data)
        if movie is None:
            return StepResult(StepStatus.DONE, f"{target.target} no longer has {data.get('title')}", already_gone=True)
        if target.action == "unmonitor":
            return await arr_common.unmonitor(c, "/movie", movie, target.target)
        size = int(movie.get("sizeOnDisk") or 0)
        params = {
            "deleteFiles": arr_common.api_bool(bool(data.get("delete_files", True))),
            "addImportExclusion": arr_common.api_bool(bool(data.get("add_import_exclusion", False))),
        }
        if not await arr_common.delete_or_gone(c, f"/movie/{movie['id']}", params):
            return StepResult(StepStatus.DONE, f"{target.target} no longer has {movie['title']}", already_gone=True)
        files = "with its files" if data.get("delete_files", True) else "keeping its files"
        return StepResult(
            StepStatus.DONE,
            f"deleted {movie['title']} from {target.target} {files}",
            details={"movie_id": movie["id"], "bytes_freed": size if data.get("delete_files", True) else 0},
        )

    return await arr_common.run_step(instance, target.target, step)


# ---------------------------------------------------------------------------------------- restore


@hookimpl
async def smartplexd_restore(
    deletion: dict[str, Any], target: CascadeTarget, ctx: PluginContext
) -> RestoreResult | None:
    """Re-add the movie by tmdb id with its old quality profile and root folder, monitored, and search
    for it; an ``unmonitor`` step is undone by monitoring the movie again."""
    if target.plugin != PLUGIN:
        return None
    instance = arr_common.find_instance(_instances(ctx), target.target)
    snap = target.data.get("snapshot") or {}
    tmdb_id = snap.get("tmdbId") or target.data.get("tmdb_id")

    async def restore(c: ServiceClient) -> RestoreResult:
        if target.action == "unmonitor":
            movie = await _find_movie(c, {"movie_id": target.data.get("movie_id"), "tmdb_id": tmdb_id})
            if movie is None:
                return RestoreResult(target.target, False, f"{target.target} no longer has tmdb {tmdb_id}")
            await c.request("PUT", f"/movie/{movie['id']}", json={**movie, "monitored": True})
            await c.request("POST", "/command", json={"name": "MoviesSearch", "movieIds": [movie["id"]]})
            return RestoreResult(target.target, True, f"monitoring {movie['title']} again and searching")
        body = {
            "tmdbId": tmdb_id,
            "title": snap.get("title") or target.data.get("title"),
            "year": snap.get("year"),
            "qualityProfileId": snap.get("qualityProfileId"),
            "rootFolderPath": snap.get("rootFolderPath"),
            "monitored": True,
            "minimumAvailability": snap.get("minimumAvailability") or "released",
            "tags": snap.get("tags") or [],
            "addOptions": {"searchForMovie": True},
        }
        added = await arr_common.add_or_held(c, "/movie", body)
        if added is None:
            return RestoreResult(target.target, True, f"tmdb {tmdb_id} is already in {target.target}")
        return RestoreResult(
            target.target,
            True,
            f"re-added {added.get('title')} to {target.target} (monitored, search started)",
            details={"movie_id": added.get("id")},
        )

    no_tmdb = "no tmdb id was recorded for this movie; add it in Radarr by hand"
    return await arr_common.run_restore(instance, target.target, tmdb_id, no_tmdb, restore)


# ----------------------------------------------------------------------------------------- health


@hookimpl
async def smartplexd_health(ctx: PluginContext) -> list[HealthResult]:
    return list(await asyncio.gather(*(arr_common.health(i, PLUGIN) for i in _instances(ctx))))


# ---------------------------------------------------------------------------------------- webhook


@hookimpl
def smartplexd_webhook(source: str, payload: dict[str, Any], ctx: PluginContext) -> list[WebhookEvent] | None:
    """Radarr Connect → Webhook: Download = item.added, MovieDelete / MovieFileDelete (not for an
    upgrade) = item.deleted_upstream, Test = test; everything else is stored as unknown."""
    if not webhook_source_is(source, PLUGIN, ctx):
        return None
    kind = str(payload.get("eventType") or "")
    movie = payload.get("movie") if isinstance(payload.get("movie"), dict) else {}
    etype, deletion = arr_common.webhook_event(kind, payload, "MovieDelete", "MovieFileDelete")
    details: dict[str, Any] = {"event_type": kind, "instance": payload.get("instanceName"), "title": movie.get("title")}
    details.update(deletion)
    if isinstance(payload.get("movieFile"), dict):
        details["file"] = payload["movieFile"].get("path")
        details["size"] = payload["movieFile"].get("size")
    return [
        WebhookEvent(
            etype,
            PLUGIN,
            tmdb_id=int_or_none(movie.get("tmdbId")),
            imdb_id=str_or_none(movie.get("imdbId")),
            at=epoch((payload.get("movieFile") or {}).get("dateAdded"))
            if isinstance(payload.get("movieFile"), dict)
            else None,
            details=details,
        )
    ]
