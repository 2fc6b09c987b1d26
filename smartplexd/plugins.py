"""The PluginManager: built-in core plugins plus every ``smartplexd`` entry point, loaded the same way."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from smartplexd import hookspecs

hookimpl = pluggy.HookimplMarker("smartplexd")
log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "smartplexd"

# The core's own features that use the same hooks (datasette's DEFAULT_PLUGINS pattern). Integrations
# with external services are *not* listed here: they arrive through entry points like any third party's.
DEFAULT_PLUGINS: tuple[str, ...] = ("smartplexd.notify",)

_pm: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager, created and loaded on first use."""
    global _pm
    if _pm is None:
        _pm = create_plugin_manager()
    return _pm


def create_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("smartplexd")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        module = importlib.import_module(name)
        pm.register(module, name=name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    module: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Every loaded plugin with the hooks it implements (``smartplexd plugins``)."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out: list[PluginInfo] = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist = dists.get(id(plugin))
        version = dist.version if dist is not None else None
        module = plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__
        out.append(PluginInfo(name, module, version, hooks, builtin=name in DEFAULT_PLUGINS))
    return sorted(out, key=lambda p: p.name)


def first_result(hook: Any, resolve: Callable[[Any], Any], **kwargs: Any) -> Any:
    """The first non-None answer of a "one plugin answers" hook (cascade step, restore).

    pluggy's own ``firstresult`` stops at the first value that is not None, and a coroutine object is never
    None, so with async plugins it would always pick whichever implementation it called first. Instead each
    implementation is called (newest registration first, as pluggy does) and ``resolve`` turns its result into
    a value (awaiting it on the caller's loop) until one is not None.
    """
    for impl in reversed(hook.get_hookimpls()):
        result = resolve(impl.function(*[kwargs[name] for name in impl.argnames]))
        if result is not None:
            return result
    return None


async def await_all(results: list[Any]) -> list[Any]:
    """Await every awaitable in a hook's result list (hooks may be sync or async)."""
    out = []
    for result in results:
        if inspect.isawaitable(result):
            result = await result
        out.append(result)
    return out


async def await_one(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result
