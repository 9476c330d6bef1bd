"""The HTTP API of ``irene serve``: a FastAPI app around one :class:`~irene.serve.engines.Engine`.

``POST /generate`` takes ``{"prompt": str, "max_new_tokens": int (optional), "stream": bool
(optional)}`` (any other field is refused) and answers ``{"completion", "tokens_in",
"tokens_out", "marks"}``; with ``"stream": true`` it answers NDJSON instead, one ``{"token":
TEXT}`` line per generated token and a last line with the same object plus ``"done": true``.
``marks`` are the server's times for the request, in seconds of the host's monotonic clock
(``time.perf_counter``, shared by the processes of one Linux host): ``received``,
``first_token``, ``end``.

``GET /health`` says what is served and counts requests (served, dropped, in flight).

Model calls run one at a time on a single worker thread; concurrent requests take turns token
by token, so they overlap in time the way a server without batching overlaps them. A request
whose client disconnects stops at its next token and is counted as dropped; malformed JSON,
unknown fields, an empty or oversized prompt get a 4xx with a one-line ``detail``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from irene.serve.engines import Engine

#: longest prompt accepted, in characters (longer ones get 413 before tokenising)
DEFAULT_MAX_PROMPT_CHARS = 32_768
#: largest request body accepted, in bytes
MAX_BODY_BYTES = 1 << 20


class GenerateRequest(BaseModel):
    """The body of ``POST /generate``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False


@dataclass
class ServerState:
    """What ``/health`` reports; ``in_flight`` counts requests being generated."""

    model: str
    engine: Engine
    tokenizer: Any
    tokenizer_source: str
    max_new_tokens: int
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    served: int = 0
    dropped: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.perf_counter)


class RequestRefused(Exception):
    """A request the server answers with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _validation_detail(exc: RequestValidationError) -> tuple[int, str]:
    """(status, one line) for a body FastAPI could not validate: 400 for malformed JSON, 422
    for a well-formed body with wrong fields."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed JSON body"
    parts = []
    for e in errors[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return 422, "; ".join(parts)


def _encode(state: ServerState, body: GenerateRequest) -> tuple[list[int], int]:
    """The prompt's token ids and the number of tokens to generate (RequestRefused if the
    prompt is too long or leaves no room)."""
    if len(body.prompt) > state.max_prompt_chars:
        raise RequestRefused(413, f"prompt of {len(body.prompt)} characters; this server takes "
                                  f"at most {state.max_prompt_chars}")
    wanted = body.max_new_tokens or state.max_new_tokens
    if wanted > state.max_new_tokens:
        raise RequestRefused(422, f"max_new_tokens {wanted} above this server's "
                                  f"--max-new-tokens {state.max_new_tokens}")
    ids = state.tokenizer.encode(body.prompt).ids
    if len(ids) + wanted > state.engine.max_len:
        raise RequestRefused(413, f"prompt of {len(ids)} tokens + {wanted} new tokens exceeds "
                                  f"the model's {state.engine.max_len} positions")
    return list(ids), wanted


class Generation:
    """One request's generation, token by token on the model thread; ``marks`` in seconds."""

    def __init__(self, state: ServerState, ids: list[int], wanted: int, received: float,
                 executor: ThreadPoolExecutor) -> None:
        self.state, self.ids, self.wanted, self.executor = state, ids, wanted, executor
        self.out: list[int] = []
        self.marks: dict[str, float | None] = {"received": received, "first_token": None,
                                                "end": None}

    async def tokens(self) -> AsyncIterator[str]:
        """Yield each new token's text as it is generated."""
        loop = asyncio.get_running_loop()
        decoder = self.state.engine.decode(self.ids)  # prefill on the first next(), then steps
        for _ in range(self.wanted):
            token = await loop.run_in_executor(self.executor, next, decoder)
            if self.marks["first_token"] is None:
                self.marks["first_token"] = time.perf_counter()
            self.out.append(token)
            yield self.state.tokenizer.decode([token])
        self.marks["end"] = time.perf_counter()

    def result(self) -> dict[str, Any]:
        return {"completion": self.state.tokenizer.decode(self.out), "tokens_in": len(self.ids),
                "tokens_out": len(self.out), "marks": self.marks,
                "runtime": self.state.engine.runtime}


class BodyLimit:
    """ASGI middleware answering 413 to a request whose Content-Length is above ``limit``
    bytes. Plain ASGI, not ``BaseHTTPMiddleware``: that one wraps ``receive`` and hides a
    client's disconnect from the endpoint."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                response = JSONResponse({"detail": f"request body above {self.limit} bytes"},
                                        status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(state: ServerState) -> FastAPI:
    """The FastAPI app serving ``state``'s engine (see the module docstring)."""
    app = FastAPI(title="irene serve", docs_url=None, redoc_url=None, openapi_url=None)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="irene-model")
    app.state.irene = state

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = _validation_detail(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        engine = state.engine
        return {"status": "ok", "model": state.model, "runtime": engine.runtime,
                "engine": engine.description, "device": engine.device, "pid": os.getpid(),
                "max_new_tokens": state.max_new_tokens, "max_len": engine.max_len,
                "max_prompt_chars": state.max_prompt_chars, "tokenizer": state.tokenizer_source,
                "weights": engine.weights, "notes": engine.notes, "served": state.served,
                "dropped": state.dropped, "in_flight": state.in_flight}

    @app.post("/generate", response_model=None)
    async def generate(body: GenerateRequest,
                       request: Request) -> dict[str, Any] | StreamingResponse:
        received = time.perf_counter()
        ids, wanted = _encode(state, body)
        gen = Generation(state, ids, wanted, received, executor)
        if body.stream:
            return StreamingResponse(_stream(state, gen), media_type="application/x-ndjson")
        state.in_flight += 1
        try:
            async for _ in gen.tokens():
                if await request.is_disconnected():
                    state.dropped += 1
                    return {"detail": "client disconnected"}
            state.served += 1
            return gen.result()
        finally:
            state.in_flight -= 1

    return app


async def _stream(state: ServerState, gen: Generation) -> AsyncIterator[bytes]:
    """NDJSON lines of a streamed generation; a disconnect cancels it (counted as dropped)."""
    state.in_flight += 1
    finished = False
    try:
        async for text in gen.tokens():
            yield (json.dumps({"token": text}) + "\n").encode()
        yield (json.dumps({**gen.result(), "done": True}) + "\n").encode()
        finished = True
    finally:
        state.in_flight -= 1
        if finished:
            state.served += 1
        else:
            state.dropped += 1
