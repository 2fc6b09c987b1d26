"""The plugin contract: every hook smartplexd calls, one documented function each.

This module is the API reference for plugin authors. A plugin is a module (or object) with functions named
like the hooks below and decorated with ``smartplexd.hookimpl``; it is registered through the
``smartplexd`` entry-point group (the built-in Sonarr, Radarr, Overseerr and Tautulli integrations take
exactly that path)::

    [project.entry-points.smartplexd]
    myplugin = "my_package.plugin"

Hooks may be plain functions or ``async def``: the caller awaits whatever needs awaiting. Every value
crossing a hook is a dataclass from :mod:`smartplexd.model`. A hook that has nothing to say for a call
(for example, a cascade step for another plugin's target) returns ``None``. For the hooks where one plugin
answers (``smartplexd_cascade_step``, ``smartplexd_restore``) the core asks each implementation in turn and
takes the first answer that is not None (:func:`smartplexd.plugins.first_result`); pluggy's ``firstresult``
cannot do that for ``async def`` hooks, whose coroutine objects are never None.
"""

from __future__ import annotations

from typing import Any

import pluggy

from smartplexd.model import (
    CascadeTarget,
    EnrichResult,
    FactDef,
    HealthResult,
    MediaItem,
    Notification,
    PluginContext,
    RestoreResult,
    StepResult,
    WebhookEvent,
)

hookspec = pluggy.HookspecMarker("smartplexd")


@hookspec
def smartplexd_config_model() -> tuple[str, Any] | None:
    """Return ``(section, model)``: the pydantic model of ``integrations.<section>`` in config.yaml.

    ``model`` is a pydantic model class, or ``list[Model]`` for integrations that may have several
    instances (a 4K Radarr next to the normal one). It is validated at load like every other key, so a
    typo in the plugin's section is reported with ``file:line:column``.
    """


@hookspec
def smartplexd_facts() -> list[FactDef]:
    """Return the facts this plugin contributes (``radarr.monitored`` ...), with type and description.

    Rules can only reference registered facts; ``smartplexd facts`` and ``docs/rules.md`` list them.
    """


@hookspec
def smartplexd_enrich(items: list[MediaItem], ctx: PluginContext) -> EnrichResult | None:
    """Return facts for a batch of items, matched by GUID (tmdb/tvdb/imdb) or Plex rating key.

    Called with batches of a few thousand items. Fetch the service's catalogue once per run (page where
    the service pages) and keep it in ``ctx.cache``; never make one request per item. If the service
    fails, return ``EnrichResult(complete=False, error=...)``: the facts become *unknown*, never a
    default. Return None when the plugin is not configured.
    """


@hookspec
def smartplexd_cascade_targets(item: MediaItem, facts: dict[str, Any], ctx: PluginContext) -> list[CascadeTarget]:
    """Return the cascade steps this plugin owns for deleting ``item`` (e.g. one per Radarr instance).

    ``facts`` are the item's stored facts by name. Called once per item when the deletion intent is
    written, before any side effect; each target becomes a ``deletion_steps`` row. Return ``[]`` when the
    plugin does not hold the item. ``ctx.rule_action`` is ``delete`` or ``unmonitor``.
    """


@hookspec
def smartplexd_cascade_step(item: MediaItem, target: CascadeTarget, ctx: PluginContext) -> StepResult | None:
    """Carry out one cascade step this plugin returned from ``smartplexd_cascade_targets``.

    Return None unless ``target.plugin`` is this plugin. Must be idempotent: when the service no longer
    holds the item, return ``StepResult(DONE, already_gone=True)``. On failure return ``FAILED`` with the
    service's own error message; the executor retries later with backoff.
    """


@hookspec
def smartplexd_restore(deletion: dict[str, Any], target: CascadeTarget, ctx: PluginContext) -> RestoreResult | None:
    """Undo this plugin's part of a finished deletion where possible (re-add to Radarr/Sonarr and search).

    ``deletion`` is the ``deletion_events`` row including its ``snapshot`` (ids, quality profile, root
    folder captured at intent time). Return None unless ``target.plugin`` is this plugin.
    """


@hookspec
def smartplexd_health(ctx: PluginContext) -> list[HealthResult]:
    """Check every configured instance: reachable, authenticated, version, latency.

    Stored in ``integration_health``, shown by ``smartplexd status`` and ``/api/integrations/health``, and
    consulted before deletions. Return ``[]`` when the plugin is not configured.
    """


@hookspec
def smartplexd_webhook(source: str, payload: dict[str, Any], ctx: PluginContext) -> list[WebhookEvent] | None:
    """Turn a webhook body received at ``/hooks/{source}`` into normalized events.

    Return None when ``source`` is not this plugin's. Unknown event types become ``WebhookEvent(type=
    "unknown")``: they are stored and ignored, never errors.
    """


@hookspec
def smartplexd_notify(event: Notification, ctx: PluginContext) -> None:
    """Deliver a notification. Must not raise for delivery failures: log them; a deletion never waits."""
