"""Serving the app in production: uvicorn over TLS 1.2+ with modern ciphers, N worker processes, and a
plain-HTTP listener that only redirects to HTTPS. `healthos up` serves through here.

With one worker the app runs in the `healthos up` process itself; with more, uvicorn's supervisor
starts worker processes that each build the app from the environment (`app_from_env`) and connect to
the same database (a running embedded cluster is found, not started twice). The supervisor process
keeps the audit checkpointer and, for the embedded cluster, stops PostgreSQL when the workers have
finished.

TLS: `ssl.SSLContext` refuses anything below TLS 1.2 by default on Python 3.10+ (and OpenSSL 3's
security level 2 refuses weak keys); the TLS 1.2 suites are narrowed to ECDHE key exchange with AEAD
ciphers, so every session has forward secrecy. TLS 1.3's suites are all of that kind already.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import structlog
import uvicorn
from uvicorn.supervisors import Multiprocess

from appliance.substrate.config import Settings
from appliance.substrate.db import Database

log = structlog.get_logger(__name__)

MODERN_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class Serving:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    redirect_port: int | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but a stop signal only asks it to finish: uvicorn re-raises SIGTERM after
    shutting down, which would kill the process before the embedded PostgreSQL is stopped."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, self.handle_exit)
        yield


def app_from_env():
    """uvicorn factory for worker processes: the app over the database the environment names."""
    import appliance.layers
    from appliance.substrate import keys
    from appliance.substrate.logs import configure_logging
    from appliance.web.app import create_app

    assert appliance.layers  # imported for its side effect: every layer registers its tables
    settings = Settings.from_env()
    configure_logging(json=settings.log_json)
    db = Database.open(settings)
    keys.bind(db, keys.Keyring.from_settings(settings))
    return create_app(db, settings)


class _SocketPerWorker(socket.socket):
    """The listening address of `serve_workers`, as the supervisor holds it: bound with SO_REUSEPORT (so
    the port is taken) and never listening. Handed to a worker process it does not travel as this socket:
    the worker binds a listening socket of its own to the same address (`_bind_reusing_port`). The kernel
    then deals each new connection to one of the workers' sockets. On one shared listening socket, the
    worker that woke first took a whole burst of connections: in `bench/intake.py` all 16 clients' keep-alive
    connections were served by one of two workers (its CPU 9.8 s of 10 s, the other's 0.04 s)."""

    def __reduce__(self):
        return _bind_reusing_port, (self.family, *self.getsockname()[:2])


def _bind_reusing_port(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_workers(config: uvicorn.Config) -> None:
    """`config.workers` uvicorn worker processes, each listening on its own socket of `config`'s TCP address
    (SO_REUSEPORT), supervised by uvicorn until a stop signal."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    held = _SocketPerWorker(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind((config.host, config.port))
    log.info("serving_workers", host=config.host, port=held.getsockname()[1], workers=config.workers)
    try:
        Multiprocess(config, sockets=[held]).run()
    finally:
        held.close()


def _config(app, serving: Serving, **extra) -> uvicorn.Config:
    tls = {}
    if serving.tls:
        tls = {"ssl_certfile": str(serving.tls_cert), "ssl_keyfile": str(serving.tls_key or serving.tls_cert),
               "ssl_ciphers": MODERN_TLS12_CIPHERS}
    return uvicorn.Config(app, host=serving.host, port=serving.port, log_config=None, access_log=False,
                          server_header=False, proxy_headers=False, **tls, **extra)


class _Redirect(BaseHTTPRequestHandler):
    """Answers every plain-HTTP request with 308 to the same path over HTTPS; serves nothing else."""

    https_port = 443
    server_version = "healthos"
    sys_version = ""

    def _redirect(self) -> None:
        host = (self.headers.get("Host") or self.server.server_address[0]).rsplit(":", 1)[0].strip("[]")
        if not host or any(c in host for c in "/\\@ \r\n"):
            host = self.server.server_address[0]
        target = f"https://{host}{'' if self.https_port == 443 else f':{self.https_port}'}{self.path}"
        self.send_response(308)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _redirect

    def log_message(self, format: str, *args) -> None:  # the signature BaseHTTPRequestHandler calls
        pass  # requests are not logged here: the path can carry identifiers


def start_redirect(host: str, port: int, https_port: int) -> ThreadingHTTPServer:
    handler = type("Redirect", (_Redirect,), {"https_port": https_port})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http-redirect", daemon=True).start()
    log.info("http_redirect_listening", host=host, port=port, to_port=https_port)
    return server


def serve(db: Database, settings: Settings, serving: Serving) -> None:
    """Serve until a stop signal; returns when every worker has finished."""
    from appliance.web.app import create_app

    redirect = None
    if serving.redirect_port is not None:
        if not serving.tls:
            raise ValueError("an HTTP→HTTPS redirect needs TLS (--tls-cert)")
        redirect = start_redirect(serving.host, serving.redirect_port, serving.port)
    try:
        if serving.workers <= 1:
            GracefulServer(_config(create_app(db, settings), serving)).run()
            return
        serve_workers(_config("appliance.web.production:app_from_env", serving, factory=True,
                              workers=serving.workers))
    finally:
        if redirect is not None:
            redirect.shutdown()
            redirect.server_close()
