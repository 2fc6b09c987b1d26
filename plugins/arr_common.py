"""What the Sonarr and Radarr plugins share: config, catalogue fetch, multi-instance merge, health,
cascade and restore plumbing, and the Connect webhook event types.

Both services run the same "Servarr" code base and API (``/api/v3``, ``X-Api-Key``), and both can be
configured several times (a 4K Radarr next to the normal one). Conventions for several instances:

- Each instance's catalogue is fetched once per run (``GET /api/v3/movie`` or ``/series``, plus ``/tag``
  and ``/qualityprofile`` to turn ids into names) and kept in ``ctx.cache``; a failure is cached too, so a
  dead instance costs one timeout per run, not one per batch.
- An item held by several instances gets *combined* facts: sizes and file counts are summed, ``monitored``
  is true when any instance monitors it, tags are the union, ``added`` the earliest, and ``instance`` /
  ``quality_profile`` / ``status`` come from the first instance in config order; ``instances`` lists all.
- If any instance fails, *all* of that plugin's facts for the batch are unknown: a combined value computed
  without the failed instance (a size missing its 4K copy, "unmonitored" when the 4K copy is monitored)
  would be wrong, and a wrong fact can delete something.
- When a Plex item's files tell which instance's folder they live in, only that instance counts (a movie
  in both a 1080p and a 4K library is two Plex items; each belongs to its own Radarr).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from smartplexd.config import ServiceConfig
from smartplexd.model import Health, HealthResult, PluginContext, RestoreResult, StepResult, StepStatus
from smartplexd_plugins.matching import epoch
from smartplexd_plugins.servicehttp import ServiceClient, ServiceError, once_per_run


class ArrConfig(ServiceConfig):
    """One Sonarr or Radarr instance."""

    api_version: Literal["v3"] = Field("v3", description="API version; Sonarr v3/v4 and Radarr v3-v6 serve v3.")
    delete_files: bool = Field(True, description="Delete the files too when a rule deletes an item.")
    add_import_exclusion: bool = Field(
        False, description="Add an import-list exclusion on delete so lists do not add the item back."
    )

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/{self.api_version}"


def unique_names(instances: list[Any]) -> list[Any]:
    """Pydantic after-validator: instance names must differ (they key health rows, facts and steps)."""
    names = [i.name for i in instances]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"instance names must be unique: {', '.join(dupes)} (give each instance a name, e.g. radarr4k)"
        )
    return instances


def client(instance: ArrConfig) -> ServiceClient:
    """An API client for one instance; the key travels only in the ``X-Api-Key`` header."""
    return ServiceClient(
        instance.name,
        instance.api_url,
        timeout=instance.timeout,
        headers={"X-Api-Key": instance.api_key.get_secret_value()},
    )


def find_instance(instances: list[ArrConfig] | None, name: str) -> ArrConfig | None:
    for instance in instances or []:
        if instance.name == name:
            return instance
    return None


# --------------------------------------------------------------------------------------- catalogues


@dataclass
class Catalogue:
    """One instance's whole library, indexed by GUID: ``index[("tmdb", 603)] = [resource]``."""

    instance: str
    resources: list[dict[str, Any]]
    tags: dict[int, str]
    profiles: dict[int, str]
    index: dict[tuple[str, Any], list[dict[str, Any]]] = field(default_factory=dict)

    def tag_labels(self, resource: dict[str, Any]) -> list[str]:
        return [self.tags.get(t, str(t)) for t in resource.get("tags") or []]


async def fetch_catalogue(instance: ArrConfig, resource_path: str, keys: dict[str, str]) -> Catalogue:
    """``GET resource_path`` (the whole library), ``/tag`` and ``/qualityprofile`` of one instance.

    ``keys`` maps an index name to the resource field holding it, e.g. ``{"tmdb": "tmdbId"}``.
    """
    async with client(instance) as c:
        resources, tags, profiles = await asyncio.gather(
            c.get_json(resource_path), c.get_json("/tag"), c.get_json("/qualityprofile")
        )
    if not isinstance(resources, list):
        raise ServiceError(instance.name, f"{resource_path} did not answer a list", 200)
    catalogue = Catalogue(
        instance.name,
        resources,
        {t["id"]: t["label"] for t in tags or []},
        {p["id"]: p["name"] for p in profiles or []},
    )
    for resource in resources:
        for index_name, field_name in keys.items():
            value = resource.get(field_name)
            if value:
                catalogue.index.setdefault((index_name, value), []).append(resource)
    return catalogue


async def catalogues(
    ctx: PluginContext, plugin: str, instances: list[ArrConfig], resource_path: str, keys: dict[str, str]
) -> tuple[list[Catalogue], list[ServiceError]]:
    """Every instance's catalogue for this run (fetched once, then from ``ctx.cache``), and the failures."""

    async def one(instance: ArrConfig) -> Catalogue | ServiceError:
        key = f"{plugin}:{instance.name}:catalogue"
        try:
            return await once_per_run(ctx, key, lambda: fetch_catalogue(instance, resource_path, keys))
        except ServiceError as exc:
            return exc

    results = await asyncio.gather(*(one(i) for i in instances))
    return [r for r in results if isinstance(r, Catalogue)], [r for r in results if isinstance(r, ServiceError)]


def lookup(catalogues: list[Catalogue], keys: list[tuple[str, Any]]) -> list[tuple[Catalogue, dict[str, Any]]]:
    """The resources matching the first GUID that matches anything, per instance in config order."""
    out: list[tuple[Catalogue, dict[str, Any]]] = []
    for catalogue in catalogues:
        for key in keys:
            if key[1] and key in catalogue.index:
                out.append((catalogue, catalogue.index[key][0]))
                break
    return out


def narrow_by_folder(
    files: list[str], matches: list[tuple[Catalogue, dict[str, Any]]]
) -> list[tuple[Catalogue, dict[str, Any]]]:
    """Keep the instances whose folder (last path component) holds one of the Plex item's files.

    Compares folder *names*, not full paths, so Docker path mappings (``/data/movies`` in Radarr,
    ``/movies`` in Plex) do not matter. When nothing can be told apart, every match stays.
    """
    if len(matches) < 2 or not files:
        return matches
    parts = {p for f in files for p in f.replace("\\", "/").split("/") if p}
    kept = [m for m in matches if os.path.basename(str(m[1].get("path") or "").rstrip("/\\")) in parts]
    return kept or matches


def combine(matches: list[tuple[Catalogue, dict[str, Any]]], plugin: str) -> dict[str, Any]:
    """The facts every *arr shares, combined over instances (see the module docstring)."""
    first_cat, first = matches[0]
    added = [a for a in (epoch(r.get("added")) for _, r in matches) if a is not None]
    return {
        f"{plugin}.instance": first_cat.instance,
        f"{plugin}.instances": [c.instance for c, _ in matches],
        f"{plugin}.monitored": any(bool(r.get("monitored")) for _, r in matches),
        f"{plugin}.tags": sorted({label for c, r in matches for label in c.tag_labels(r)}),
        f"{plugin}.added": min(added) if added else None,
        f"{plugin}.quality_profile": first_cat.profiles.get(first.get("qualityProfileId"), None),
    }


def step_instances(
    instances: list[ArrConfig], matches: list[tuple[Catalogue, dict[str, Any]]], failed: list[ServiceError]
) -> list[tuple[ArrConfig, tuple[Catalogue, dict[str, Any]] | None]]:
    """The instances that get a cascade step, in config order: each one holding the item, with its match,
    and each one that could not be asked now, with None (the step resolves ids when it runs, so an item
    is never left behind in an instance that was briefly down). Instances known not to hold it get none."""
    by_instance = {c.instance: (c, r) for c, r in matches}
    failed_names = {e.service for e in failed}
    return [(i, by_instance.get(i.name)) for i in instances if i.name in by_instance or i.name in failed_names]


# -------------------------------------------------------------------------------------------- health


async def health(instance: ArrConfig, plugin: str) -> HealthResult:
    """Reachable, authenticated, version and latency of one instance, plus its disks and warnings.

    ``details["disk"]`` is ``[{"path", "free", "total"}]`` in bytes (from ``/api/v3/diskspace``) for
    storage-pressure rules; ``details["warnings"]`` are the instance's own health-check messages.
    """
    async with client(instance) as c:
        try:
            status, latency = await c.timed("GET", "/system/status")
        except ServiceError as exc:
            return HealthResult(instance.name, plugin, exc.health, error=str(exc))
        result = HealthResult(
            instance.name,
            plugin,
            Health.OK,
            version=(status or {}).get("version"),
            latency_ms=round(latency, 1),
        )
        try:
            disks, checks = await asyncio.gather(c.get_json("/diskspace"), c.get_json("/health"))
        except ServiceError as exc:
            result.status = exc.health if exc.unauthorized else Health.ERROR
            result.error = str(exc)
            return result
    result.details = {
        "disk": [
            {"path": d.get("path"), "free": d.get("freeSpace"), "total": d.get("totalSpace")}
            for d in disks or []
            if isinstance(d, dict)
        ],
        "warnings": [
            f"{h.get('type')}: {h.get('message')}"
            for h in checks or []
            if isinstance(h, dict) and h.get("type") in ("warning", "error")
        ],
    }
    return result


# ------------------------------------------------------------------------------------- cascade steps


async def run_step(
    instance: ArrConfig | None, name: str, step: Callable[[ServiceClient], Awaitable[StepResult]]
) -> StepResult:
    """Run ``step`` with a client for ``instance``; a ServiceError becomes FAILED with the service's words."""
    if instance is None:
        return StepResult(
            StepStatus.FAILED,
            f"{name} is no longer configured; add it back to config.yaml or skip this step",
            retryable=False,
        )
    try:
        async with client(instance) as c:
            return await step(c)
    except ServiceError as exc:
        return StepResult(StepStatus.FAILED, str(exc), retryable=exc.retryable, details={"status": exc.status})


async def unmonitor(c: ServiceClient, path: str, resource: dict[str, Any], target_name: str) -> StepResult:
    """``PUT path/{id}`` with the resource unmonitored; DONE either way (saying so when it already was)."""
    if not resource.get("monitored"):
        return StepResult(StepStatus.DONE, f"{resource['title']} is already unmonitored in {target_name}")
    await c.request("PUT", f"{path}/{resource['id']}", json={**resource, "monitored": False})
    return StepResult(StepStatus.DONE, f"unmonitored {resource['title']} in {target_name}")


async def get_or_none(c: ServiceClient, path: str, params: dict[str, Any] | None = None) -> Any:
    """``GET path`` as JSON, or None when the service answers 404."""
    try:
        return await c.get_json(path, params)
    except ServiceError as exc:
        if exc.not_found:
            return None
        raise


async def delete_or_gone(c: ServiceClient, path: str, params: dict[str, Any] | None = None) -> bool:
    """``DELETE path``; True when it deleted, False when the service no longer had it (404)."""
    try:
        await c.request("DELETE", path, params=params)
    except ServiceError as exc:
        if exc.not_found:
            return False
        raise
    return True


async def find_resource(
    c: ServiceClient, path: str, resource_id: Any, guid_field: str, guid: Any
) -> dict[str, Any] | None:
    """The movie or series a step is about: ``GET path/{resource_id}`` checked against its GUID (an id
    that now names another item means ours is gone), or, when no id was resolved, ``GET path?guid_field=``.
    """
    if resource_id:
        resource = await get_or_none(c, f"{path}/{resource_id}")
        if resource is not None and guid and resource.get(guid_field) != guid:
            return None  # the id now names another item: ours is gone
        return resource
    if guid:
        found = await c.get_json(path, {guid_field: guid})
        return found[0] if found else None
    return None


def already_added(exc: ServiceError) -> bool:
    """Servarr's validation failure for an add of something it already holds."""
    return exc.status == 400 and "already been added" in exc.detail


async def add_or_held(c: ServiceClient, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """``POST path`` (an add); the added resource, or None when the instance already holds it."""
    try:
        return (await c.request("POST", path, json=body)).json()
    except ServiceError as exc:
        if already_added(exc):
            return None
        raise


# ------------------------------------------------------------------------------------------- restore


async def run_restore(
    instance: ArrConfig | None,
    target_name: str,
    guid: Any,
    no_guid: str,
    restore: Callable[[ServiceClient], Awaitable[RestoreResult]],
) -> RestoreResult:
    """Run ``restore`` with a client for ``instance``; not configured, no recorded GUID (``no_guid`` says
    what to do) or a ServiceError become a failed RestoreResult with that message."""
    if instance is None:
        return RestoreResult(target_name, False, f"{target_name} is no longer configured")
    if not guid:
        return RestoreResult(target_name, False, no_guid)
    try:
        async with client(instance) as c:
            return await restore(c)
    except ServiceError as exc:
        return RestoreResult(target_name, False, str(exc))


# ------------------------------------------------------------------------------------------- webhook


def webhook_event(kind: str, payload: dict[str, Any], item_delete: str, file_delete: str) -> tuple[str, dict[str, Any]]:
    """Our event type for a Servarr Connect webhook ``eventType`` and its deletion details.

    Test = ``test``, Download = ``item.added``, ``item_delete`` (MovieDelete, SeriesDelete) or
    ``file_delete`` (MovieFileDelete, EpisodeFileDelete) that is not an upgrade = ``item.deleted_upstream``,
    anything else ``unknown``. The details are ``deleted_files`` for ``item_delete`` and ``delete_reason``
    for ``file_delete``.
    """
    if kind == "Test":
        etype = "test"
    elif kind == "Download":
        etype = "item.added"
    elif kind == item_delete or (kind == file_delete and payload.get("deleteReason") != "upgrade"):
        etype = "item.deleted_upstream"
    else:
        etype = "unknown"
    details: dict[str, Any] = {}
    if kind == item_delete:
        details["deleted_files"] = bool(payload.get("deletedFiles"))
    if kind == file_delete:
        details["delete_reason"] = payload.get("deleteReason")
    return etype, details


def api_bool(value: bool) -> str:
    return "true" if value else "false"
