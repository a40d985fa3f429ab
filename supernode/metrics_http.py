"""The metrics port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for probes.

Nothing else answers there (404), so a scanner learns nothing and a typo in a scrape
config fails loudly instead of scraping the same page under another path.

- ``/healthz`` (liveness): 200 while the process answers HTTP at all. A restart is the
  cure for a process that stops answering, never for one that is merely busy or draining.
- ``/readyz`` (readiness): 200 ``ready`` while the node serves; 503 with the reason while
  it starts, drains or (a cluster member) has not joined: a load balancer stops sending it
  new clients, and a rolling restart waits for it.

Served from a daemon thread (prometheus-client's threading WSGI server), so a scrape or a
probe never waits for the event loop: a node whose loop is stuck still answers liveness;
readiness reads plain attributes the loop keeps current.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

# Why the process is not ready, or None when it is.
Readiness = Callable[[], str | None]


def _text() -> list[tuple[str, str]]:
    # A new list per response: wsgiref adds Content-Length to the list it is given.
    return [("Content-Type", "text/plain; charset=utf-8")]


def metrics_app(
    registry: CollectorRegistry, readiness: Readiness
) -> Callable[..., Iterable[bytes]]:
    """The WSGI application of the metrics port."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", _text())
            return [b"ok\n"]
        if path == "/readyz":
            reason = readiness()
            if reason is None:
                start_response("200 OK", _text())
                return [b"ready\n"]
            start_response("503 Service Unavailable", _text())
            return [f"not ready: {reason}\n".encode()]
        start_response("404 Not Found", _text())
        return [b"not found: this port serves /metrics, /healthz and /readyz\n"]

    return app


def serve(
    registry: CollectorRegistry, readiness: Readiness, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Bind ``host:port`` (IPv4 or IPv6) and serve from a daemon thread. A failed bind is
    the OSError itself: the caller's ``supernode.startup.binding`` names the setting."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        str(sockaddr[0]),
        port,
        metrics_app(registry, readiness),
        Server,
        handler_class=_SilentHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics http", daemon=True)
    thread.start()
    return server, thread
