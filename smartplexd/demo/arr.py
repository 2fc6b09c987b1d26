"""What the simulated Sonarr and Radarr share: API-key auth, error shapes, system/status, health, tags,
disk space, quality profiles, root folders, commands and the ``/_sim/arr`` control routes.

Both services are built on the same "Servarr" code base, so they answer these endpoints identically
(see tests/contracts/sonarr.md and radarr.md):

- Auth: query ``apikey``, then header ``X-Api-Key``, then ``Authorization: Bearer``; anything else is a
  401 with an empty body.
- JSON is camelCase with nulls omitted, dates are UTC ``2021-03-07T18:22:41Z``.
- Errors are ``{"message": ..., "description"?: ...}``; validation failures are a 400 with a JSON *array*
  of ``{propertyName, errorMessage, attemptedValue, severity, errorCode, ...}``.
- Query parameter names are matched case-insensitively (ASP.NET model binding), and booleans are
  ``true``/``false`` in any case (pyarr sends ``True``).

Each app keeps its :class:`ArrState` under ``app[ARR_STATE]``. Tests call its methods directly (through
``ThreadedServer.call`` when the server runs in a thread); another process uses the control routes::

    GET    /_sim/arr/state        deletes, commands, exclusions, disk space, health, counts
    POST   /_sim/arr/diskspace    {"freeSpace": 1e12, "totalSpace"?: 4e12, "path"?: "/data/movies"}
    POST   /_sim/arr/health       [{"source": "...", "type": "warning", "message": "...", "wikiUrl": "..."}]
    POST   /_sim/arr/system       {"version": "5.14.0.9383"}
    DELETE /_sim/arr/log          forget recorded deletes and commands
    POST   /_sim/arr/add          (service specific) {"tmdbId"|"tvdbId": N, "hasFile"?: true}
    POST   /_sim/arr/remove       (service specific) {"id": N}  removed outside the API: nothing recorded
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from smartplexd.demo.faults import FAULTS
from smartplexd.demo.universe import QUALITY_PROFILES

API = "/api/v3"


# ---------------------------------------------------------------------------------------------- JSON


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, as Servarr's System.Text.Json writes them."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def json_response(obj: Any, status: int = 200) -> web.Response:
    return json_bytes_response(dumps(obj), status)


def iso(epoch: float) -> str:
    """``2021-03-07T18:22:41Z`` (UTC, no fraction), the Servarr API date format."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -------------------------------------------------------------------------------------------- errors


class ArrError(Exception):
    """Raised by handlers; the app answers with :attr:`response` (see :func:`api_key_middleware`)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def error(status: int, message: str, description: str | None = None) -> ArrError:
    """An exception to ``raise`` that answers ``{"message", "description"?}`` (Servarr error pipeline)."""
    body: dict[str, Any] = {"message": message}
    if description is not None:
        body["description"] = description
    return ArrError(json_response(body, status))


def not_found(model: str, item_id: int) -> ArrError:
    """404 for an unknown id: Servarr's ``ModelNotFoundException`` message."""
    return error(404, f"{model} with ID {item_id} does not exist")


def validation_failure(
    property_name: str, message: str, attempted: Any = None, code: str = "PredicateValidator"
) -> dict[str, Any]:
    """One FluentValidation failure as Servarr serializes it (nulls omitted)."""
    out: dict[str, Any] = {"propertyName": property_name, "errorMessage": message}
    if attempted is not None:
        out["attemptedValue"] = attempted
    out.update(
        {
            "formattedMessagePlaceholderValues": {"propertyName": property_name, "propertyValue": attempted},
            "severity": "error",
            "errorCode": code,
        }
    )
    return out


def validation_error(failures: list[dict[str, Any]]) -> ArrError:
    """400 with the JSON array of validation failures."""
    return ArrError(json_response(failures, 400))


# ------------------------------------------------------------------------------------------- queries


def query_values(request: web.Request, name: str) -> list[str]:
    """Every value of a query parameter, name matched case-insensitively (``tmdbid`` = ``tmdbId``)."""
    low = name.lower()
    return [v for k, v in request.query.items() if k.lower() == low]


def query_value(request: web.Request, name: str) -> str | None:
    values = query_values(request, name)
    return values[0] if values else None


def query_int(request: web.Request, name: str) -> int | None:
    value = query_value(request, name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise error(400, f"The value '{value}' is not valid for {name}.") from None


def query_ints(request: web.Request, name: str) -> list[int]:
    try:
        return [int(v) for v in query_values(request, name) if v != ""]
    except ValueError:
        raise error(400, f"The value is not valid for {name}.") from None


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = query_value(request, name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise error(400, f"The value '{value}' is not valid for {name}.")


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(400, "Invalid request body") from None


def path_id(request: web.Request) -> int:
    return int(request.match_info["id"])


# ------------------------------------------------------------------------------------------- caching


class RenderCache:
    """JSON bytes of rendered resources, per item and for the whole catalogue, until invalidated.

    Real Radarr answers ``GET /movie`` with the whole library; a 20,000-movie catalogue is served from
    one cached ``bytes`` and a mutation re-renders only the items it touched.
    """

    def __init__(self, render: Callable[[int], dict[str, Any]]) -> None:
        self._render = render
        self._items: dict[int, bytes] = {}
        self._all: bytes | None = None

    def item(self, item_id: int) -> bytes:
        cached = self._items.get(item_id)
        if cached is None:
            cached = self._items[item_id] = dumps(self._render(item_id))
        return cached

    def all(self, ids: Iterable[int]) -> bytes:
        if self._all is None:
            self._all = b"[" + b",".join(self.item(i) for i in ids) + b"]"
        return self._all

    def invalidate(self, item_id: int | None = None) -> None:
        """Forget one item (and the catalogue), or everything when ``item_id`` is None."""
        if item_id is None:
            self._items.clear()
        else:
            self._items.pop(item_id, None)
        self._all = None


# --------------------------------------------------------------------------------------------- state


@dataclass
class DiskSpace:
    path: str
    label: str
    free_space: int
    total_space: int

    def resource(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "freeSpace": self.free_space,
            "totalSpace": self.total_space,
        }


_TIB = 1 << 40


class ArrState:
    """The parts of a Sonarr/Radarr instance every endpoint shares. Service states subclass it.

    Plain attributes a test may read or set: ``version``, ``health`` (list of HealthResource dicts),
    ``tags`` (id → label), ``disks``, ``deletes`` (one dict per API deletion, in order), ``commands``
    (id → CommandResource).
    """

    exclusions: dict[int, Any]
    """Import(-list) exclusions by id, each a service dataclass with ``resource()``; set by the service."""

    def __init__(
        self,
        *,
        app_name: str,
        instance: str,
        api_key: str,
        version: str,
        root_folder: str,
        used_bytes: int,
        render: Callable[[int], dict[str, Any]],
        tag_labels: Iterable[str] = (),
    ) -> None:
        self.cache = RenderCache(render)
        """Cached JSON of the main catalogue (movies or series); invalidate an item after mutating it."""
        self.app_name = app_name
        self.instance = instance
        self.instance_name = instance[:1].upper() + instance[1:]
        self.api_key = api_key
        self.version = version
        self.started = time.time()
        self.health: list[dict[str, Any]] = []
        self.tags: dict[int, str] = {}
        self._next_tag_id = 1
        for label in sorted(set(tag_labels)):
            self.tag_id(label)
        self.root_folders: list[str] = [root_folder]
        # About 20 % free by default: enough headroom that storage-pressure rules stay quiet until a
        # test lowers it with set_free_space().
        total = max(_TIB, (used_bytes * 5 // 4) // _TIB * _TIB + _TIB)
        self.disks: list[DiskSpace] = [
            DiskSpace("/", "", 20 * (1 << 30), 64 * (1 << 30)),
            DiskSpace(root_folder, "", total - used_bytes, total),
        ]
        self.deletes: list[dict[str, Any]] = []
        self.commands: dict[int, dict[str, Any]] = {}
        self._next_command_id = 1

    # -- tags
    def tag_id(self, label: str) -> int:
        """The id of the tag with ``label`` (case-insensitive, as Servarr), creating it when missing."""
        for tag_id, existing in self.tags.items():
            if existing.lower() == label.lower():
                return tag_id
        tag_id = self._next_tag_id
        self._next_tag_id += 1
        self.tags[tag_id] = label.lower()
        return tag_id

    def tag_resource(self, tag_id: int) -> dict[str, Any]:
        return {"id": tag_id, "label": self.tags[tag_id]}

    # -- disk space
    def disk_for(self, path: str) -> DiskSpace:
        """The disk holding ``path`` (longest matching mount)."""
        best = self.disks[0]
        for disk in self.disks:
            prefix = disk.path.rstrip("/") + "/"
            if (path == disk.path or path.startswith(prefix)) and len(disk.path) > len(best.path):
                best = disk
        return best

    def set_free_space(self, free_space: int, path: str | None = None, total_space: int | None = None) -> None:
        """Set the free (and optionally total) bytes of the disk holding ``path`` (default: the media
        root folder). Storage-pressure rules read this through ``GET /api/v3/diskspace``."""
        disk = self.disk_for(path or self.root_folders[0])
        if total_space is not None:
            disk.total_space = int(total_space)
        disk.free_space = min(int(free_space), disk.total_space)

    def free_space(self, path: str | None = None) -> int:
        return self.disk_for(path or self.root_folders[0]).free_space

    def release_space(self, path: str, size: int) -> None:
        """Files of ``size`` bytes under ``path`` were deleted: the disk gains that much free space."""
        disk = self.disk_for(path)
        disk.free_space = min(disk.total_space, disk.free_space + size)

    # -- log
    def record_delete(self, kind: str, **details: Any) -> None:
        self.deletes.append({"kind": kind, "at": iso(time.time()), **details})

    def record_command(self, name: str, body: dict[str, Any], trigger: str = "manual") -> dict[str, Any]:
        """Queue a command as Servarr would; the simulation completes it at once."""
        command_id = self._next_command_id
        self._next_command_id += 1
        now = iso(time.time())
        resource = {
            "id": command_id,
            "name": name,
            "commandName": _spaced(name),
            "body": {
                **body,
                "name": name,
                "trigger": trigger,
                "sendUpdatesToClient": True,
                "updateScheduledTask": True,
                "requiresDiskAccess": False,
                "isExclusive": False,
                "isLongRunning": False,
                "suppressMessages": False,
            },
            "priority": "normal",
            "status": "completed",
            "result": "successful",
            "queued": now,
            "started": now,
            "ended": now,
            "duration": "00:00:00.0100000",
            "trigger": trigger,
            "stateChangeTime": now,
            "sendUpdatesToClient": True,
            "updateScheduledTask": True,
        }
        self.commands[command_id] = resource
        return resource

    def commands_named(self, name: str) -> list[dict[str, Any]]:
        """Recorded commands with this name (e.g. ``MoviesSearch``), oldest first."""
        return [c for c in self.commands.values() if c["name"].lower() == name.lower()]

    def clear_log(self) -> None:
        self.deletes.clear()
        self.commands.clear()

    # -- resources
    def system_status(self) -> dict[str, Any]:
        return {
            "appName": self.app_name,
            "instanceName": self.instance_name,
            "version": self.version,
            "buildTime": "2025-03-01T00:00:00Z",
            "isDebug": False,
            "isProduction": True,
            "isAdmin": False,
            "isUserInteractive": False,
            "startupPath": f"/app/{self.app_name.lower()}/bin",
            "appData": "/config",
            "osName": "ubuntu",
            "osVersion": "22.04",
            "isNetCore": True,
            "isLinux": True,
            "isOsx": False,
            "isWindows": False,
            "isDocker": True,
            "mode": "console",
            "branch": "main" if self.app_name == "Sonarr" else "master",
            "authentication": "forms",
            "migrationVersion": 217 if self.app_name == "Sonarr" else 240,
            "urlBase": "",
            "runtimeVersion": "6.0.36",
            "runtimeName": ".NET",
            "startTime": iso(self.started),
            "packageUpdateMechanism": "docker",
            "databaseVersion": "3.46.1",
            "databaseType": "sqLite",
        }

    def quality_profiles(self) -> list[dict[str, Any]]:
        return [
            {
                "id": pid,
                "name": name,
                "upgradeAllowed": False,
                "cutoff": pid,
                "items": [],
                "minFormatScore": 0,
                "cutoffFormatScore": 0,
                "minUpgradeFormatScore": 1,
                "formatItems": [],
            }
            for pid, name in sorted(QUALITY_PROFILES.items())
        ]

    def root_folder_resources(self) -> list[dict[str, Any]]:
        return [
            {
                "id": i,
                "path": path,
                "accessible": True,
                "freeSpace": self.disk_for(path).free_space,
                "unmappedFolders": [],
            }
            for i, path in enumerate(self.root_folders, start=1)
        ]

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /_sim/arr/state`` returns; services add their own keys."""
        return {
            "appName": self.app_name,
            "instance": self.instance,
            "version": self.version,
            "deletes": list(self.deletes),
            "commands": list(self.commands.values()),
            "diskspace": [d.resource() for d in self.disks],
            "health": list(self.health),
            "tags": [self.tag_resource(t) for t in self.tags],
        }


def _spaced(name: str) -> str:
    """``MoviesSearch`` → ``Movies Search`` (Servarr's commandName)."""
    out = ""
    for ch in name:
        if ch.isupper() and out:
            out += " "
        out += ch
    return out


ARR_STATE = web.AppKey("arr_state", ArrState)


# ---------------------------------------------------------------------------------------------- auth


@web.middleware
async def api_key_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Servarr's ApiKeyAuthenticationHandler: query ``apikey``, header ``X-Api-Key``, then Bearer.

    Also turns an :class:`ArrError` raised by a handler into its response.
    """
    try:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        return await _authenticated(request, handler)
    except ArrError as exc:
        return exc.response


async def _authenticated(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[ARR_STATE]
    key = query_value(request, "apikey") or request.headers.get("X-Api-Key")
    if not key:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    if request.app[FAULTS].revoke_auth or key != state.api_key:
        return web.Response(status=401)
    return await handler(request)


# -------------------------------------------------------------------------------------- common routes


def _state(request: web.Request) -> ArrState:
    return request.app[ARR_STATE]


async def _system_status(request: web.Request) -> web.Response:
    return json_response(_state(request).system_status())


async def _health(request: web.Request) -> web.Response:
    return json_response(_state(request).health)


async def _diskspace(request: web.Request) -> web.Response:
    return json_response([d.resource() for d in _state(request).disks])


async def _quality_profiles(request: web.Request) -> web.Response:
    return json_response(_state(request).quality_profiles())


async def _quality_profile(request: web.Request) -> web.Response:
    for profile in _state(request).quality_profiles():
        if profile["id"] == path_id(request):
            return json_response(profile)
    raise not_found("QualityProfile", path_id(request))


async def _root_folders(request: web.Request) -> web.Response:
    return json_response(_state(request).root_folder_resources())


async def _root_folder(request: web.Request) -> web.Response:
    for folder in _state(request).root_folder_resources():
        if folder["id"] == path_id(request):
            return json_response(folder)
    raise not_found("RootFolder", path_id(request))


async def _tags(request: web.Request) -> web.Response:
    state = _state(request)
    return json_response([state.tag_resource(t) for t in state.tags])


async def _tag(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.tags:
        raise not_found("Tag", path_id(request))
    return json_response(state.tag_resource(path_id(request)))


async def _create_tag(request: web.Request) -> web.Response:
    body = await json_body(request)
    label = str((body or {}).get("label") or "").strip()
    if not label:
        raise validation_error([validation_failure("Label", "'Label' must not be empty.", "", "NotEmptyValidator")])
    state = _state(request)
    return json_response(state.tag_resource(state.tag_id(label)), status=201)


async def _update_tag(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    tag_id = path_id(request) if "id" in request.match_info else int(body.get("id") or 0)
    if tag_id not in state.tags:
        raise not_found("Tag", tag_id)
    state.tags[tag_id] = str(body.get("label") or state.tags[tag_id]).lower()
    state_changed(request)
    return json_response(state.tag_resource(tag_id), status=202)


async def _delete_tag(request: web.Request) -> web.Response:
    state = _state(request)
    if state.tags.pop(path_id(request), None) is None:
        raise not_found("Tag", path_id(request))
    state_changed(request)
    return json_response({})


def state_changed(request: web.Request) -> None:
    """Something every rendered item may show changed (a tag label): drop all cached JSON."""
    request.app[ARR_STATE].cache.invalidate()


async def _post_command(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = str((body or {}).get("name") or "")
    if not name:
        raise validation_error([validation_failure("Name", "'Name' must not be empty.", "", "NotEmptyValidator")])
    extra = {k: v for k, v in body.items() if k != "name"}
    return json_response(_state(request).record_command(name, extra), status=201)


async def _commands(request: web.Request) -> web.Response:
    return json_response(list(_state(request).commands.values()))


async def _command(request: web.Request) -> web.Response:
    command = _state(request).commands.get(path_id(request))
    if command is None:
        raise not_found("Command", path_id(request))
    return json_response(command)


async def _exclusions(request: web.Request) -> web.Response:
    return json_response([e.resource() for e in _state(request).exclusions.values()])


async def _exclusion(request: web.Request) -> web.Response:
    exclusion = _state(request).exclusions.get(path_id(request))
    if exclusion is None:
        raise not_found("ImportListExclusion", path_id(request))
    return json_response(exclusion.resource())


async def _delete_exclusion(request: web.Request) -> web.Response:
    if _state(request).exclusions.pop(path_id(request), None) is None:
        raise not_found("ImportListExclusion", path_id(request))
    return web.Response(status=200)


def add_exclusion_routes(app: web.Application, resource: str) -> None:
    """List, get and delete import(-list) exclusions under ``/api/v3/{resource}``: the same controller,
    at ``exclusions`` in Radarr and ``importlistexclusion`` in Sonarr."""
    r = app.router
    r.add_get(f"{API}/{resource}", _exclusions)
    r.add_get(f"{API}/{resource}/" + r"{id:\d+}", _exclusion)
    r.add_delete(f"{API}/{resource}/" + r"{id:\d+}", _delete_exclusion)


async def _sim_state(request: web.Request) -> web.Response:
    return json_response(_state(request).snapshot())


async def _sim_diskspace(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        _state(request).set_free_space(int(body["freeSpace"]), body.get("path"), body.get("totalSpace"))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"expected {{'freeSpace': int, 'path'?, 'totalSpace'?}}: {exc}"}, 400)
    return json_response([d.resource() for d in _state(request).disks])


async def _sim_health(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, list):
        return json_response({"error": "expected a JSON array of HealthResource objects"}, 400)
    _state(request).health = body
    return json_response(body)


async def _sim_system(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = _state(request)
    if "version" in body:
        state.version = str(body["version"])
    return json_response(state.system_status())


async def _sim_clear_log(request: web.Request) -> web.Response:
    _state(request).clear_log()
    return json_response({})


def install(app: web.Application, state: ArrState) -> None:
    """Store ``state`` under ``app[ARR_STATE]``, add API-key auth and the routes both services share.

    Call after ``faults.install(app)`` so that the request log and the fault knobs see every request,
    including the ones rejected for a bad key.
    """
    app[ARR_STATE] = state
    app.middlewares.append(api_key_middleware)
    r = app.router
    r.add_get(f"{API}/system/status", _system_status)
    r.add_get(f"{API}/health", _health)
    r.add_get(f"{API}/diskspace", _diskspace)
    r.add_get(f"{API}/qualityprofile", _quality_profiles)
    r.add_get(API + r"/qualityprofile/{id:\d+}", _quality_profile)
    r.add_get(f"{API}/rootfolder", _root_folders)
    r.add_get(API + r"/rootfolder/{id:\d+}", _root_folder)
    r.add_get(f"{API}/tag", _tags)
    r.add_post(f"{API}/tag", _create_tag)
    r.add_get(API + r"/tag/{id:\d+}", _tag)
    r.add_put(API + r"/tag/{id:\d+}", _update_tag)
    r.add_put(f"{API}/tag", _update_tag)
    r.add_delete(API + r"/tag/{id:\d+}", _delete_tag)
    r.add_post(f"{API}/command", _post_command)
    r.add_get(f"{API}/command", _commands)
    r.add_get(API + r"/command/{id:\d+}", _command)
    r.add_get("/_sim/arr/state", _sim_state)
    r.add_post("/_sim/arr/diskspace", _sim_diskspace)
    r.add_post("/_sim/arr/health", _sim_health)
    r.add_post("/_sim/arr/system", _sim_system)
    r.add_delete("/_sim/arr/log", _sim_clear_log)
