"""``mesatee serve``: a node folder as an HTTP(S) service for its parties (see ``docs/service.md``)."""

from __future__ import annotations

from pathlib import Path

import click

from mesatee.cli.common import CommandError
from mesatee.service import DEFAULT_HOST, DEFAULT_PORT, ServiceLimits, check_transport
from mesatee.service import serve as run_service

_LIMITS = ServiceLimits()
_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.option(
    "--node",
    "node_path",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    envvar="MESATEE_NODE",
    help="The node's folder (from `mesatee node init`). Env: MESATEE_NODE.",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="The address to listen on. Beyond loopback, TLS is required unless --insecure-http.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--tls-cert", type=_PEM, help="The server's certificate chain (PEM).")
@click.option("--tls-key", type=_PEM, help="The certificate's private key (PEM).")
@click.option(
    "--insecure-http", is_flag=True, help="Serve plain HTTP beyond loopback: requests and evidence travel in clear."
)
@click.option(
    "--workers",
    type=click.IntRange(0, 256),
    default=1,
    show_default=True,
    help="Enclave workers in this process (0: another process, e.g. `mesatee node run`, runs the tasks).",
)
@click.option(
    "--max-body",
    type=click.IntRange(1),
    default=_LIMITS.max_body,
    show_default=True,
    help="Bytes of a request body (a manifest, a grant, a policy).",
)
@click.option(
    "--max-upload", type=click.IntRange(1), default=_LIMITS.max_upload, show_default=True, help="Bytes of one dataset."
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=_LIMITS.max_connections,
    show_default=True,
    help="Connections served at once (more get HTTP 503).",
)
@click.option("--access-log", is_flag=True, help="Log every HTTP request.")
def serve(
    node_path: Path,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure_http: bool,
    workers: int,
    max_body: int,
    max_upload: int,
    max_connections: int,
    access_log: bool,
) -> None:  # fmt: skip
    """Serve a node over HTTP(S) until Ctrl-C or SIGTERM; parties use its URL as --node.

    OpenAPI documentation is at /docs. Bound to 127.0.0.1 by default.
    """
    if not (node_path / "node.db").is_file():
        raise CommandError(f"{node_path}: no node here (create one with `mesatee node init {node_path}`)")
    check_transport(host, tls_cert, tls_key, insecure_http)  # before anything is printed or opened
    limits = ServiceLimits(max_body=max_body, max_upload=max_upload, max_connections=max_connections)
    click.echo(f"serving {node_path} on {'https' if tls_cert else 'http'}://{host}:{port}", err=True)
    run_service(
        node_path, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, insecure_http=insecure_http,
        workers=workers, limits=limits, access_log=access_log,
    )  # fmt: skip
