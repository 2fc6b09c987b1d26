"""A simulated OpenAI-compatible Chat Completions server, scripted per test.

``POST /v1/chat/completions`` answers with the next scripted :class:`Reply` from a queue: a text answer, a
turn of tool calls (function calling), an API error (429 with ``Retry-After``, 500, 401...), or a raw body
that is not what a client expects (malformed JSON). Every request body is recorded, so a test can assert
exactly what the client sent (the system prompt, the tool results fed back, the size of the context).
``Authorization: Bearer <key>`` is checked when the app has an ``api_key`` (401 in OpenAI's error format).

When the queue is empty the server either answers 400 ``no scripted reply left`` (``default=None``, what
tests want: an unexpected extra request fails loudly and is not retried) or runs a tiny deterministic
responder (``default="demo"``: first asks for ``aggregate(by=library)``, then summarises the tool result)
so ``smartplexd demo`` has an assistant that works without a real provider.

In-process tests use ``app[OPENAI_SIM]`` (push replies, read ``requests``); from another process::

    POST   /_sim/openai/replies     [{"content": "hi", "usage": [12, 3]},
                                     {"tool_calls": [{"name": "list_facts", "arguments": {}}]},
                                     {"status": 429, "retry_after": "0.05"},
                                     {"body": "{not json", "status": 200}]
    GET    /_sim/openai/requests    every request body received, oldest first
    DELETE /_sim/openai             forget replies and recorded requests

Usage counts are the scripted ones when given, else ``len(request body) // 4`` prompt tokens and
``len(content) // 4`` completion tokens (at least 1), like a rough tokenizer. ``faults.install`` gives the
usual latency/outage knobs under ``/_sim/faults``.

Run one on its own: ``python -m smartplexd.demo.openai --port 8199`` (demo responder, no key).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from smartplexd.demo import faults as faults_mod

DEFAULT_MODEL = "gpt-4o-mini"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    """A dict is sent as JSON; a string is sent verbatim (use it for malformed arguments)."""
    id: str | None = None


@dataclass
class Reply:
    """One scripted answer. Build them with :func:`text`, :func:`tool_calls`, :func:`error` and :func:`raw`."""

    status: int = 200
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    """(prompt_tokens, completion_tokens); None = estimated from the sizes."""
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None
    error_type: str | None = None
    body: str | None = None
    """A raw response body sent as is (malformed JSON, HTML from a proxy...)."""
    content_type: str = "application/json"
    delay: float = 0.0
    """Seconds to wait before answering (a client timeout fires when this is longer)."""
    finish_reason: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        """The ``/_sim/openai/replies`` form: keys of this class, ``retry_after`` and ``tool_calls`` as dicts."""
        data = dict(data)
        calls = [ToolCall(c["name"], c.get("arguments", {}), c.get("id")) for c in data.pop("tool_calls", [])]
        usage = data.pop("usage", None)
        retry_after = data.pop("retry_after", None)
        if "message" in data:
            data["error_message"] = data.pop("message")
        reply = cls(tool_calls=calls, usage=tuple(usage) if usage else None, **data)
        if retry_after is not None:
            reply.headers["Retry-After"] = str(retry_after)
        return reply


def text(content: str, *, usage: tuple[int, int] | None = None, delay: float = 0.0) -> Reply:
    """A final assistant message."""
    return Reply(content=content, usage=usage, delay=delay)


def tool_calls(*calls: ToolCall | tuple[str, dict[str, Any] | str], usage: tuple[int, int] | None = None) -> Reply:
    """One assistant turn asking for tool calls: ``tool_calls(("search_items", {"query": "x"}))``."""
    built = [c if isinstance(c, ToolCall) else ToolCall(c[0], c[1]) for c in calls]
    return Reply(tool_calls=built, usage=usage)


def error(status: int, message: str = "", *, retry_after: float | str | None = None) -> Reply:
    """An API error in OpenAI's format (``{"error": {"message", "type", "code"}}``)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status=status, error_message=message or None, headers=headers)


def raw(body: str, *, status: int = 200, content_type: str = "application/json") -> Reply:
    """A response whose body is sent verbatim (e.g. truncated JSON)."""
    return Reply(status=status, body=body, content_type=content_type)


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}


class OpenAISim:
    """The scripted state of one simulated server."""

    def __init__(self, api_key: str | None = None, default: str | None = None) -> None:
        if default not in (None, "demo"):
            raise ValueError("default must be None or 'demo'")
        self.api_key = api_key
        self.default = default
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        """Every request body (parsed JSON; ``{"_raw": text}`` when it was not JSON), oldest first."""
        self._ids = itertools.count(1)

    def push(self, *replies: Reply) -> None:
        """Queue replies; each request consumes one."""
        self.replies.extend(replies)

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The recorded bodies that reached the completions endpoint."""
        return [r for r in self.requests if "_raw" not in r]

    def next_reply(self, body: dict[str, Any]) -> Reply:
        if self.replies:
            return self.replies.popleft()
        if self.default == "demo":
            return _demo_reply(body)
        return error(400, "simulated OpenAI: no scripted reply left for this request")

    def next_id(self) -> int:
        return next(self._ids)


OPENAI_SIM = web.AppKey("openai_sim", OpenAISim)


def _demo_reply(body: dict[str, Any]) -> Reply:
    """A deterministic stand-in for a model: look at the library once, then summarise what came back."""
    messages = body.get("messages") or []
    tool_results = [m for m in messages if m.get("role") == "tool"]
    if not tool_results:
        return tool_calls(("aggregate", {"by": "library"}))
    data = str(tool_results[-1].get("content", ""))
    return text(
        "This is the simulated assistant of `smartplexd demo` (no real model is attached). "
        f"Here is what the aggregate tool returned: {data[:600]}"
    )


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(payload, status=status, headers=headers)


async def _completions(request: web.Request) -> web.StreamResponse:
    sim = request.app[OPENAI_SIM]
    raw_body = await request.text()
    try:
        body = json.loads(raw_body)
        if not isinstance(body, dict):
            raise ValueError("body is not an object")
    except ValueError:
        sim.requests.append({"_raw": raw_body})
        return _error_response(400, "We could not parse the JSON body of your request.")
    sim.requests.append(body)
    if sim.api_key is not None and request.headers.get("Authorization") != f"Bearer {sim.api_key}":
        return _error_response(401, "Incorrect API key provided.")
    if not body.get("model") or not isinstance(body.get("messages"), list) or not body["messages"]:
        return _error_response(400, "'model' and a non-empty 'messages' array are required.")

    reply = sim.next_reply(body)
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if reply.body is not None:
        return web.Response(
            status=reply.status, text=reply.body, content_type=reply.content_type, headers=reply.headers
        )
    if reply.status != 200:
        return _error_response(reply.status, reply.error_message or f"simulated error {reply.status}", reply.headers)

    n = sim.next_id()
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_{n}_{i}",
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.arguments
                    if isinstance(call.arguments, str)
                    else json.dumps(call.arguments, separators=(",", ":")),
                },
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    if reply.usage is not None:
        prompt_tokens, completion_tokens = reply.usage
    else:
        produced = (reply.content or "") + "".join(json.dumps(c.arguments) for c in reply.tool_calls)
        prompt_tokens, completion_tokens = max(1, len(raw_body) // 4), max(1, len(produced) // 4)
    payload = {
        "id": f"chatcmpl-sim-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_simulated",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return web.json_response(payload, headers=reply.headers)


async def _models(request: web.Request) -> web.Response:
    sim = request.app[OPENAI_SIM]
    if sim.api_key is not None and request.headers.get("Authorization") != f"Bearer {sim.api_key}":
        return _error_response(401, "Incorrect API key provided.")
    return web.json_response(
        {"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "sim"}]}
    )


async def _sim_push(request: web.Request) -> web.Response:
    try:
        data = await request.json()
        items = data if isinstance(data, list) else [data]
        replies = [Reply.from_json(item) for item in items]
    except (ValueError, TypeError, KeyError) as exc:
        return web.json_response({"error": f"invalid scripted reply: {exc}"}, status=400)
    request.app[OPENAI_SIM].push(*replies)
    return web.json_response({"queued": len(request.app[OPENAI_SIM].replies)})


async def _sim_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAI_SIM].requests)


async def _sim_reset(request: web.Request) -> web.Response:
    request.app[OPENAI_SIM].reset()
    return web.json_response({})


def create_app(
    *,
    api_key: str | None = None,
    default: str | None = None,
    faults: faults_mod.Faults | None = None,
) -> web.Application:
    """Build the simulated server; its state is ``app[OPENAI_SIM]``. ``api_key=None`` accepts any key."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    faults_mod.install(app, faults)
    app[OPENAI_SIM] = OpenAISim(api_key=api_key, default=default)
    app.router.add_post("/v1/chat/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/_sim/openai/replies", _sim_push)
    app.router.add_get("/_sim/openai/requests", _sim_requests)
    app.router.add_delete("/_sim/openai", _sim_reset)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated OpenAI-compatible API on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.openai", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: accept any)")
    parser.add_argument("--strict", action="store_true", help="answer 400 when no scripted reply is queued")
    args = parser.parse_args(argv)
    app = create_app(api_key=args.api_key, default=None if args.strict else "demo")
    print(f"simulated OpenAI on http://127.0.0.1:{args.port}/v1", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
