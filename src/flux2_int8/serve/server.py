"""Running the app in this process with uvicorn: bind first, load, warm, serve, and stop gracefully.

The port is bound before the model loads, so a port in use fails in a second, not
after a load. SIGTERM (and Ctrl-C) stop the server the way a service should: no new
connections, the requests still queued answered 503 at once, the batch running
finished and answered, then a clean exit (status 0 for SIGTERM).
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn

from .app import ServerState, build_app
from .engine import Engine
from .settings import ModelSpec, ServeConfigError, ServeSettings


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, which on a signal also tells the batcher to stop (uvicorn alone would wait for the queue)."""

    def __init__(self, config: uvicorn.Config, state: ServerState):
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self.state.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.state.begin_stop)
        super().handle_exit(sig, frame)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ServeConfigError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def serve(spec: ModelSpec, settings: ServeSettings, quiet: bool = False, as_json: bool = False) -> None:
    """Bind, load the model, and serve until SIGTERM or Ctrl-C."""
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    if quiet or as_json:
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    engine = Engine(spec)
    url = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}:{port}"

    def announce() -> None:
        if as_json:
            print(json.dumps({"url": url, "port": port, "model": engine.model_id}), flush=True)
        elif not quiet:
            print(f"serving {engine.model_id} on {url} (playground: {url}/, API: {url}/v1); Ctrl-C or SIGTERM stops", flush=True)

    app = build_app(engine, settings, on_ready=announce)
    config = uvicorn.Config(app, log_level="warning" if quiet or as_json else "info", access_log=not (quiet or as_json), timeout_graceful_shutdown=int(settings.request_timeout) + 1, lifespan="on")
    server = _GracefulServer(config, app.state.server)
    previous = signal.signal(signal.SIGTERM, _after_sigterm)  # uvicorn re-raises the signal it stopped on: end quietly
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise ServeConfigError("the server did not start (see the lines above)")
    if not quiet and not as_json:
        print("stopped", file=sys.stderr)


def _after_sigterm(sig: int, frame: Any) -> None:
    """Nothing: by the time uvicorn hands SIGTERM on, the graceful stop is done."""
