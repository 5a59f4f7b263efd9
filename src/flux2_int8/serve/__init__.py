"""`flux2-int8 serve`: OpenAI's images API over a loaded klein pipeline, batched, bounded and keyed.

One room over the public Python API (it owns no model logic): `settings` (what a
server is started with, checked before torch loads), `fields` and `references`
(each request checked before any work), `batcher` (dynamic batching, the bounded
queue), `engine` (the pipeline, its LoRAs, a batch at a time), `app` (the routes,
errors in OpenAI's shape), `metrics`, `page` (the playground), `server` (uvicorn,
graceful stop) and `ray_serve` (the same app as a Ray Serve deployment). FastAPI,
uvicorn and prometheus-client are the optional extra `[serve]`. See docs/serve.md.

May import: errors, generate, int8, threads, version, scale_out.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {
    "Limits": ".settings",
    "ModelSpec": ".settings",
    "ServeSettings": ".settings",
    "ServeConfigError": ".settings",
    "build_app": ".app",
    "Engine": ".engine",
    "serve": ".server",
}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)

__all__ = list(_LAZY_EXPORTS)
