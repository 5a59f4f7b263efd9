"""The ASGI app: OpenAI's images API over one engine, batched, bounded and keyed.

Routes: `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart,
`image` / `image[]` one or more), `GET /v1/models`, `GET /health` (alive), `GET /ready`
(loaded, warm, not stopping), `GET /metrics` (Prometheus), `GET /` (the playground).
The `/v1` routes need the API key when the server has one; the others answer anyone
(a load balancer's probes, a scraper, the page itself, which holds no secret).
Every refusal is an `ApiError` in OpenAI's shape; nothing a client sends can make a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import Batcher
from .engine import BatchKey, Engine, Item, Made
from .errors import ApiError, bad_field
from .fields import EDIT_FIELDS, GENERATION_FIELDS, ImageRequest, parse_request, reject_mask
from .metrics import CONTENT_TYPE, Metrics
from .page import render_page
from .references import References, read_references
from .settings import ServeSettings

log = logging.getLogger("flux2_int8.serve")
_IMAGE_FIELDS = ("image", "image[]")
_MAX_FORM_FIELDS = 64
# Paths the request counter names; anything else counts as "other" (a scanner's paths must not grow the metrics).
_ROUTES = ("/", "/health", "/ready", "/metrics", "/v1/models", "/v1/images/generations", "/v1/images/edits")


class ServerState:
    """One server's engine, batcher, metrics and life-cycle flags (what the routes share)."""

    def __init__(self, engine: Engine, settings: ServeSettings):
        self.engine = engine
        self.settings = settings
        self.batcher = Batcher(engine.run, settings.max_batch, settings.batch_wait_ms, settings.max_queue)
        self.metrics = Metrics(lambda: self.batcher.waiting_requests, lambda: self.batcher.running)
        self.batcher.on_batch = self.metrics.batch
        self.ready = False
        self.model_ids = (engine.model_id, "flux2-int8")
        self._stopping: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.batcher.start()
        await self.batcher.in_worker(self.engine.warm)
        self.ready = True

    def begin_stop(self) -> asyncio.Task:
        """Stop taking work, 503 the queued, let the running batch finish (SIGTERM and shutdown both land here)."""
        self.ready = False
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self.batcher.stop())
        return self._stopping

    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing API key: send the header 'Authorization: Bearer KEY'", code="missing_api_key")
        if not hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8")):  # constant time
            raise ApiError(401, "invalid API key", code="invalid_api_key")

    def check_serving(self) -> None:
        if self.batcher.stopping:
            raise ApiError(503, "the server is shutting down; retry later", code="shutting_down")
        if not self.ready:
            raise ApiError(503, "the model is still warming up; retry shortly (GET /ready says when)", code="not_ready")


def build_app(engine: Engine, settings: ServeSettings, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The app serving `engine` with `settings` (the model is loaded already; warming runs at start-up, then `on_ready`)."""
    state = ServerState(engine, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        if on_ready is not None:
            on_ready()
        yield
        await state.begin_stop()

    app = FastAPI(title="flux2-int8", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    _add_error_handlers(app, state)
    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    limits = state.settings.limits

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(render_page(), headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        state.check_serving()
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        state.authorize(request)
        return {"object": "list", "data": [state.engine.describe()]}

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        started = time.perf_counter()
        state.authorize(request)
        state.check_serving()
        values = _json_object(await _read_body(request, limits.max_body_bytes))
        parsed = parse_request(values, GENERATION_FIELDS, limits, state.model_ids, state.engine.adapters)
        return await _make(request, state, "generate", parsed, None, started)

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Response:
        started = time.perf_counter()
        state.authorize(request)
        state.check_serving()
        values, uploads = await _form(request, await _read_body(request, limits.max_body_bytes), limits.max_references)
        reject_mask(values)
        parsed = parse_request(values, EDIT_FIELDS, limits, state.model_ids, state.engine.adapters, form=True)
        references = await asyncio.to_thread(read_references, uploads, limits)
        return await _make(request, state, "edit", parsed, references, started)


async def _make(request: Request, state: ServerState, task: str, parsed: ImageRequest, references: References | None, started: float) -> Response:
    steps, guidance = state.engine.resolve(parsed.steps, parsed.guidance)
    width, height = parsed.width, parsed.height
    if references is not None and width is None:
        _check_reference_size(references, state.settings.limits.max_pixels)
    key = BatchKey(task, width, height, steps, guidance, parsed.loras, references.digest if references else None)
    images = references.images if references else ()
    items = [Item(parsed.prompt, parsed.seed + k, parsed.output_format, parsed.output_compression, images) for k in range(parsed.n)]
    made = await _unless_disconnected(request, state, state.batcher.submit(key, items, state.settings.request_timeout))
    if made is None:
        return Response(status_code=499)  # nobody reads it: the client left
    state.metrics.images.inc(len(made))
    total = time.perf_counter() - started
    state.metrics.phase.labels("request").observe(total)
    state.metrics.phase.labels("encode").observe(made[0].encode_seconds)
    state.metrics.requests.labels(request.url.path, "200").inc()
    return JSONResponse(_response(parsed, made, steps, guidance, total, state.engine.model_id))


def _response(parsed: ImageRequest, made: list[Made], steps: int, guidance: float, total: float, model: str) -> dict[str, Any]:
    """OpenAI's ImagesResponse, plus the seed of every image and the settings, so a result can be made again with `generate`."""
    seeds = [parsed.seed + k for k in range(parsed.n)]
    return {
        "created": int(time.time()),
        "data": [{"b64_json": item.b64, "revised_prompt": parsed.prompt, "seed": seed} for item, seed in zip(made, seeds, strict=True)],
        "model": model,
        "output_format": parsed.output_format,
        "size": f"{made[0].width}x{made[0].height}",
        "seeds": seeds,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "loras": [{"name": name, "scale": scale} for name, scale in parsed.loras],
        "timings": {"total_seconds": round(total, 4), "pipeline_seconds": round(made[0].pipeline_seconds, 4), "batch_size": made[0].batch_size},
    }


def _check_reference_size(references: References, max_pixels: int) -> None:
    """An edit without `size` is made at its first reference's size (at most 1 MP, as klein's processor caps it)."""
    width, height = references.images[0].size
    pixels = min(width * height, 1024 * 1024)
    if pixels > max_pixels:
        raise bad_field("size", f"not given, so the first reference's size ({width}x{height}) would be used; that is more than this server's {max_pixels} pixels: give a smaller size", code="too_large")


async def _unless_disconnected(request: Request, state: ServerState, work: Any) -> list[Made] | None:
    """Await the batcher; if the client disconnects first, cancel (its queued work leaves the queue) and return None."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    state.metrics.rejections.labels("disconnected").inc()
    try:
        await task
    except (asyncio.CancelledError, ApiError):
        pass
    return None


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes `limit`, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is {int(declared)} bytes; this server takes at most {limit}", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is more than {limit} bytes, the most this server takes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        values = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON; send a JSON object (Content-Type: application/json)", code="invalid_json") from None
    if not isinstance(values, dict):
        raise ApiError(400, f"the body is a JSON {type(values).__name__}; send a JSON object of fields", code="invalid_json")
    return values


async def _form(request: Request, body: bytes, max_references: int) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Fields (text) and reference images (file name, bytes) of a multipart body read already."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "edits take a multipart/form-data body (fields, and the reference images as image or image[])", code="invalid_content_type")
    try:
        form = await Request(request.scope, replay).form(max_files=max_references + 1, max_fields=_MAX_FORM_FIELDS, max_part_size=len(body) + 1)
    except Exception as error:  # starlette's multipart parser: a malformed body or too many parts
        raise ApiError(400, f"the multipart body cannot be read ({getattr(error, 'detail', None) or error})", code="invalid_multipart") from None
    values: dict[str, Any] = {}
    uploads: list[tuple[str, bytes]] = []
    for name in form.keys():
        entries = form.getlist(name)
        if name in _IMAGE_FIELDS:
            for entry in entries:
                if not isinstance(entry, UploadFile):
                    raise bad_field(name, "must be an image file part, not text")
                uploads.append((entry.filename or "", await entry.read()))
            values[name] = "(files)"
            continue
        if len(entries) > 1:
            raise bad_field(name, "is given more than once")
        entry = entries[0]
        values[name] = "(file)" if isinstance(entry, UploadFile) and name == "mask" else entry
        if isinstance(entry, UploadFile) and name != "mask":
            raise bad_field(name, "must be a text field, not a file")
    await form.close()
    return values, uploads


def _add_error_handlers(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        state.metrics.rejections.labels(error.code or str(error.status)).inc()
        endpoint = request.url.path if request.url.path in _ROUTES else "other"
        state.metrics.requests.labels(endpoint, str(error.status)).inc()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = "no such route; the API is under /v1 (GET /v1/models, POST /v1/images/generations, POST /v1/images/edits)" if error.status_code == 404 else str(error.detail)
        return await api_error(request, ApiError(error.status_code, message, code="not_found" if error.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(ApiError(500, "internal server error; the server log has the details").body(), status_code=500)
