"""Configuration as code: pydantic models for config.yaml, loading, secrets and the JSON Schema.

``load_config(path)`` returns a validated :class:`AppConfig` or raises :class:`ConfigError`, whose message
lists every problem as ``config.yaml:12:5: plex.servers[0].url: not a valid URL``. Unknown keys are errors
with the closest valid key suggested. Secrets are ``${ENV_VAR}`` or ``{file: /run/secrets/x}``; they load
as :class:`pydantic.SecretStr` (masked in repr), are registered with the logging filter that masks them,
and are only ever revealed to build an HTTP header.

Each plugin contributes the model of its ``integrations.<name>`` section through the
``smartplexd_config_model`` hook; an unknown integration name is an error like an unknown key.
"""

from __future__ import annotations

import difflib
import json
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator
from pydantic.json_schema import WithJsonSchema

from smartplexd import yamlsource
from smartplexd.units import parse_duration, parse_percent, parse_size
from smartplexd.yamlsource import SourceError, SourceErrors

DEFAULT_CONFIG_PATH = "./config.yaml"


class ConfigError(SourceErrors):
    """The configuration is invalid; ``str()`` lists every problem with file:line:column."""


# --- value types ------------------------------------------------------------------------------------


def _resolve_secret(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"file"}:
            raise ValueError("a secret is a string (e.g. ${MY_TOKEN}) or {file: /path/to/secret}")
        path = Path(str(value["file"]))
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    if value is None or value == "":
        raise ValueError("secret is empty (is the environment variable set to an empty value?)")
    if not isinstance(value, str | int):
        raise ValueError("a secret is a string (e.g. ${MY_TOKEN}) or {file: /path/to/secret}")
    return str(value)


Secret = Annotated[
    SecretStr,
    BeforeValidator(_resolve_secret),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "the secret, usually ${ENV_VAR}"},
                {
                    "type": "object",
                    "properties": {"file": {"type": "string"}},
                    "required": ["file"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
"""A credential: ``${ENV}`` or ``{file: PATH}``; never printed, logged, stored or put in a URL."""


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a valid URL: {value!r} (expected http://host:port)")
    if parts.username or parts.password or "token" in parts.query.lower() or "apikey" in parts.query.lower():
        raise ValueError("credentials do not belong in the URL; put them in the token/api_key setting")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"not a valid URL: {value!r} (bad port)") from None
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(_check_url), WithJsonSchema({"type": "string", "format": "uri"})]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^\d+(\.\d+)?\s*[A-Za-z]*$"}]}),
]
"""Bytes; accepts ``500MB``, ``2TB``, ``1.5TiB``."""
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^(\d+(\.\d+)?[smhdwy])+$"}]}),
]
"""Seconds; accepts ``30s``, ``15m``, ``12h``, ``90d``, ``1y``."""
Percent = Annotated[
    float, BeforeValidator(parse_percent), WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]})
]


def _check_cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression {value!r}: {exc} (e.g. '0 3 * * *')") from None
    return value


Cron = Annotated[str, AfterValidator(_check_cron)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ServiceConfig(Section):
    """Base for an integration instance (plugins extend it): where it is, how to authenticate."""

    name: Name = Field(description="Instance name, shown in status and used in facts (e.g. radarr4k).")
    url: Url
    api_key: Secret
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds before a request counts as failed.")
    freshness: Duration = Field(86_400.0, description="Facts older than this are unknown (never read as 0 or false).")


# --- sections -----------------------------------------------------------------------------------------


class TokenConfig(Section):
    name: Name
    role: Literal["admin", "viewer", "requester"]
    token: Secret

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("API tokens must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v


class ServerConfig(Section):
    listen: str = Field("0.0.0.0:8765", description="host:port the HTTP server binds.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API.")
    tokens: list[TokenConfig] = Field(default_factory=list)
    sse_heartbeat: Duration = 30.0
    sync_rate_limit_per_hour: int = Field(10, ge=1)
    max_webhook_bytes: Size = 1_048_576

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be host:port, e.g. 0.0.0.0:8765 (got {v!r})")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PlexSyncConfig(Section):
    schedule: Cron = "0 */6 * * *"
    page_size: int = Field(500, ge=1, le=5000)
    pages_in_flight: int = Field(4, ge=1, le=16)


class PlexServerConfig(Section):
    name: Name
    url: Url
    token: Secret
    libraries: list[str] = Field(default_factory=list, description="Library titles to mirror; empty = all.")
    timeout: float = Field(10.0, gt=0, le=300)
    sync: PlexSyncConfig = Field(default_factory=PlexSyncConfig)


class PlexConfig(Section):
    servers: list[PlexServerConfig] = Field(default_factory=list)

    @field_validator("servers")
    @classmethod
    def _unique(cls, v: list[PlexServerConfig]) -> list[PlexServerConfig]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"server names must be unique: {', '.join(dupes)}")
        return v


class WebhookSource(Section):
    """How one sender authenticates. ``sender`` picks the payload parser (default: the key's name)."""

    auth: Literal["hmac", "basic", "header", "url_token"]
    sender: str | None = None
    secret: Secret | None = None
    secrets: list[Secret] = Field(default_factory=list, description="Extra secrets accepted (rotation).")
    username: str | None = None
    password: Secret | None = None
    header: str | None = None
    tolerance: Duration = 300.0

    @model_validator(mode="after")
    def _complete(self) -> WebhookSource:
        need = {
            "hmac": ("secret",),
            "basic": ("username", "password"),
            "header": ("header", "secret"),
            "url_token": ("secret",),
        }[self.auth]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"auth {self.auth} needs {' and '.join(missing)}")
        return self

    def all_secrets(self) -> list[str]:
        values = [self.secret, *self.secrets] if self.secret else list(self.secrets)
        return [s.get_secret_value() for s in values]


class RetryConfig(Section):
    max_attempts: int = Field(12, ge=1)
    initial_backoff: Duration = 60.0
    max_backoff: Duration = 6 * 3600.0


class DeletionConfig(Section):
    enabled: bool = False
    window: str | None = Field("03:00-05:00", description="Local time range HH:MM-HH:MM; null = any time.")
    max_items_per_run: int = Field(25, ge=0)
    max_bytes_per_run: Size = 2 * 10**12
    max_library_shrink_percent: Percent = 10.0
    keep_label: str = "keep"
    leaving_soon_collection: str = "Leaving Soon"
    tombstone_days: int = Field(365, ge=1, description="How long a deleted item stays blocked from re-import.")
    require_healthy: bool = Field(True, description="Skip items whose integrations are unhealthy.")
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError(f"window must look like 03:00-05:00 (got {v!r})")
        return v


NOTIFICATION_EVENTS = (
    "leaving_soon",
    "deletion.done",
    "deletion.partial",
    "deletion.failed",
    "integration.down",
    "plex.unauthorized",
    "sync.refused",
    "rule.report",
)


class NotificationConfig(Section):
    url: Secret = Field(description="An apprise URL (mailto://, discord://, ntfy://, ...).")
    events: list[Literal[NOTIFICATION_EVENTS]] = Field(default_factory=lambda: list(NOTIFICATION_EVENTS))  # type: ignore[valid-type]


class ModelPrice(Section):
    prompt_per_million: float = Field(ge=0)
    completion_per_million: float = Field(ge=0)


class AssistantConfig(Section):
    base_url: Url | None = Field(None, description="OpenAI-compatible endpoint; null = api.openai.com.")
    api_key: Secret | None = None
    model: str = "gpt-4o-mini"
    monthly_budget_usd: float = Field(5.0, ge=0)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": ModelPrice(prompt_per_million=0.15, completion_per_million=0.60),
            "gpt-4o": ModelPrice(prompt_per_million=2.50, completion_per_million=10.00),
        }
    )


class RetentionConfig(Section):
    webhook_events: Duration = 30 * 86_400.0
    sync_events: Duration = 90 * 86_400.0
    events: Duration = 7 * 86_400.0
    plans: Duration = 90 * 86_400.0


class AppConfig(Section):
    """The whole config.yaml. ``base_dir`` is the config file's folder (relative paths resolve there)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    database: str = "./smartplexd.db"
    timezone: str = "UTC"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    plex: PlexConfig = Field(default_factory=PlexConfig)
    integrations: dict[str, Any] = Field(default_factory=dict)
    webhooks: dict[Name, WebhookSource] = Field(default_factory=dict)
    deletion: DeletionConfig = Field(default_factory=DeletionConfig)
    rules: list[str] = Field(default_factory=lambda: ["./rules"])
    notifications: list[NotificationConfig] = Field(default_factory=list)
    assistant: AssistantConfig | None = None
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    _base_dir: Path = pydantic.PrivateAttr(default_factory=Path.cwd)
    _source: str = pydantic.PrivateAttr(default="")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)") from None
        return v

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source(self) -> str:
        """The config file this was loaded from."""
        return self._source

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def database_path(self) -> Path:
        return self.resolve(self.database)

    @property
    def rule_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.rules]

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self._base_dir / p)

    def plex_server(self, name: str) -> PlexServerConfig:
        for server in self.plex.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log filter that masks them."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list | tuple):
                for v in value:
                    walk(v)

        walk(self)
        return [s for s in found if s]


# --- plugin sections ---------------------------------------------------------------------------------


def integration_models(pm: Any = None) -> dict[str, Any]:
    """``{section name: model}`` contributed by the loaded plugins."""
    from smartplexd.plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    models: dict[str, Any] = {}
    for result in pm.hook.smartplexd_config_model():
        if result:
            name, model = result
            models[name] = model
    return models


def _integrations_model(pm: Any = None) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (model | None, None) for name, model in integration_models(pm).items()}
    return pydantic.create_model("Integrations", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


def json_schema(pm: Any = None) -> dict[str, Any]:
    """The JSON Schema of config.yaml, including every plugin's section (``smartplexd config schema``)."""
    model = pydantic.create_model(
        "SmartplexdConfig",
        __base__=AppConfig,
        integrations=(_integrations_model(pm), Field(default_factory=dict)),
    )  # type: ignore[call-overload]
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "smartplexd config.yaml"
    return schema


# --- loading -----------------------------------------------------------------------------------------


def load_config(path: str | Path, pm: Any = None, text: str | None = None) -> AppConfig:
    """Read, expand and validate a config file; raise :class:`ConfigError` listing every problem."""
    try:
        data, marks = yamlsource.load(path, text)
    except SourceErrors as exc:
        raise ConfigError(exc.errors) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([SourceError(str(path), 1, 1, "", "the config file must be a mapping of keys")])
    errors: list[SourceError] = []
    try:
        config = AppConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        errors.extend(yamlsource.validation_errors(exc, marks, AppConfig).errors)
        config = None
    integrations = data.get("integrations") or {}
    validated: dict[str, Any] = {}
    if isinstance(integrations, dict):
        models = integration_models(pm)
        for name, raw in integrations.items():
            loc = ("integrations", name)
            if name not in models:
                close = difflib.get_close_matches(name, list(models), n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else f"; installed: {', '.join(models) or 'none'}"
                line, col = marks.find(loc, prefer_key=True)
                errors.append(SourceError(str(path), line, col, f"integrations.{name}", f"unknown integration{hint}"))
                continue
            if raw is None:
                continue
            adapter = pydantic.TypeAdapter(models[name])
            try:
                validated[name] = adapter.validate_python(raw)
            except pydantic.ValidationError as exc:
                errors.extend(yamlsource.validation_errors(exc, marks, models[name], root=loc).errors)
    if errors:
        errors.sort(key=lambda e: (e.line, e.column))
        raise ConfigError(errors)
    assert config is not None
    config.integrations = validated
    config._base_dir = Path(path).resolve().parent
    config._source = str(path)
    from smartplexd.log import register_secrets

    register_secrets(config.secret_values())
    return config


def dump_redacted(config: AppConfig) -> str:
    """The effective config as JSON with every secret replaced by ``**********`` (for debugging)."""
    return json.dumps(config.model_dump(mode="json"), indent=2, default=str)
