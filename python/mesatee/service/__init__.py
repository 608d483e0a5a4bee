"""The node on the network: an HTTP service (FastAPI on uvicorn) of a node folder for its parties.

``serve(node_path, ...)`` runs it until it is stopped (SIGINT or SIGTERM);
``mesatee.Client("https://host:port", party, policy)`` talks to it through
:class:`mesatee.node.remote.RemoteNode`. The service is a thin adapter: the
node checks every signed request as in process. See ``docs/service.md``.

Importing this package loads neither FastAPI nor uvicorn; :func:`serve` and
:func:`create_app` do.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mesatee.errors import InvalidArgumentError, NodeError
from mesatee.service.limits import ServiceLimits

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mesatee.node.node import Node

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServiceLimits", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470


def create_app(node: Node, limits: ServiceLimits | None = None) -> FastAPI:
    """The FastAPI app serving ``node`` (the caller opens and closes the node)."""
    from mesatee.service.app import create_app as create

    return create(node, limits)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(host: str, tls_cert: Path | None, tls_key: Path | None, insecure_http: bool) -> None:
    """Refuse plain HTTP beyond loopback unless ``insecure_http`` says so (parties' requests and evidence would
    travel in clear, and a man in the middle could hold them back or replay them within their window)."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgumentError("TLS needs both a certificate (tls_cert) and its key (tls_key)")
    if tls_cert is None and not is_loopback(host) and not insecure_http:
        raise InvalidArgumentError(
            f"refusing to serve plain HTTP on {host}, which is not a loopback address: give tls_cert and tls_key, "
            "or insecure_http=True to accept that"
        )


def serve(
    node_path: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    insecure_http: bool = False,
    workers: int | None = None,
    limits: ServiceLimits | None = None,
    access_log: bool = False,
) -> None:
    """Serve the node in ``node_path`` on ``host:port`` until stopped (SIGINT or SIGTERM), then close it.

    Loopback only unless TLS is given (``tls_cert``, ``tls_key``: PEM files) or ``insecure_http`` is set.
    ``workers``: the node's enclave workers in this process (None: the scheduler's default; 0: another process
    opened on the same folder runs the tasks). ``limits``: :class:`ServiceLimits`.
    """
    import uvicorn

    from mesatee.node.node import Node

    cert = None if tls_cert is None else Path(tls_cert)
    key = None if tls_key is None else Path(tls_key)
    check_transport(host, cert, key, insecure_http)
    limits = limits or ServiceLimits()
    with Node(node_path, workers=workers) as node:
        config = uvicorn.Config(
            create_app(node, limits),
            host=host,
            port=port,
            ssl_certfile=cert,
            ssl_keyfile=key,
            limit_concurrency=limits.max_connections,
            http="httptools",  # a dependency: parses and writes HTTP/1.1 for less CPU than h11 (~75 us a request)
            access_log=access_log,
            log_level="info",
            server_header=False,
        )
        server = uvicorn.Server(config)
        # uvicorn in a thread of its own: on the main thread it re-raises SIGTERM after its shutdown, killing the
        # process before the node could close (stop its workers, hand back their runs).
        thread = threading.Thread(target=server.run, name="mesatee-http")
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            thread.start()
            while thread.is_alive() and not stop.wait(0.2):
                pass
            server.should_exit = True
            thread.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not server.started:
            raise NodeError(f"the service could not listen on {host}:{port} (see the log above)")
