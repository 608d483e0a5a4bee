"""What every command shares: one-line errors, hex and id parameters, the passphrase, and a party's session.

A party's session is its party file (``--party``, its passphrase), the node
(``--node``: a folder, opened in this process, or an http(s) URL passed to
:class:`mesatee.Client` as it is) and the attestation policy it trusts
(``--mrenclave``, ``--root``, ``--allow-software``). Each option also reads an
environment variable (``MESATEE_PARTY``, ``MESATEE_NODE``, ...), which is what
keeps repeated commands short.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

import mesatee
from mesatee.core.attestation import AttestationPolicy
from mesatee.core.files import atomic_write_bytes
from mesatee.errors import MesateeError
from mesatee.node import Client, Node, NodeAPI
from mesatee.parties import Party, PartyIdentity

F = TypeVar("F", bound=Callable[..., Any])

PASSPHRASE_ENV = "MESATEE_PASSPHRASE"


# --------------------------------------------------------------------------- errors


class CommandError(click.ClickException):
    """An expected failure of a command (exit status 1)."""


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (a remote node's messages may carry escape sequences) are
    shown escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def describe(exc: BaseException) -> str:
    """One line saying what failed (messages of mesatee's errors never hold key material)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return printable(f"{exc.filename}: {exc.strerror or exc}")
    return printable(" ".join(str(exc).split())) or type(exc).__name__


class MesateeGroup(click.Group):
    """A command group whose commands' expected failures become :class:`CommandError` (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MesateeError, OSError) as exc:  # OSError includes TimeoutError
            raise CommandError(describe(exc)) from None


class RootGroup(MesateeGroup):
    """The ``mesatee`` command: every error, a usage error too, is one line ``error: ...`` on stderr."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            status = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)


# --------------------------------------------------------------------------- parameters


class HexBytes(click.ParamType):
    """Bytes given in hex, of one of ``sizes`` (any size when empty); ``secret`` values never appear in errors."""

    name = "hex"

    def __init__(self, *sizes: int, secret: bool = False) -> None:
        self.sizes = sizes
        self.secret = secret

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        shown = "the value" if self.secret else repr(value[:80])
        try:
            data = bytes.fromhex(value)
        except ValueError:
            self.fail(f"{shown} is not hex", param, ctx)
        if self.sizes and len(data) not in self.sizes:
            wanted = " or ".join(str(size) for size in self.sizes)
            self.fail(f"{shown} is {len(data)} bytes, not {wanted} (in hex: twice as many digits)", param, ctx)
        return data


PARTY_ID = HexBytes(32)
DATASET_ID = HexBytes(32)
TASK_ID = HexBytes(16)
MEASUREMENT = HexBytes(32)
NONCE = HexBytes()


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def write_output(path: Path, data: bytes) -> None:
    """Write a file the user asked for, atomically and readable by its owner only (it may be secret).

    The write renames a new file over ``path``: a device or pipe there (``/dev/null``) would be replaced, not written.
    """
    if path.exists() and not path.is_file():
        raise CommandError(f"{path}: not a regular file (the output is written to a new file renamed over it)")
    atomic_write_bytes(path, data)


def read_identity(path: Path) -> PartyIdentity:
    return PartyIdentity.from_bytes(path.read_bytes())


# --------------------------------------------------------------------------- passphrase


def passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> str:
    """The party file's passphrase: ``--passphrase-file`` (its first line), ``MESATEE_PASSPHRASE``, or a prompt."""
    if passphrase_file is not None:
        lines = passphrase_file.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0]:
            raise CommandError(f"{passphrase_file}: the first line (the passphrase) is empty")
        return lines[0]
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    return str(click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True))


def load_party(path: Path, passphrase_file: Path | None) -> tuple[Party, str]:
    """The party in ``path`` and its passphrase; a wrong passphrase is an error naming the file."""
    secret = passphrase(passphrase_file)
    try:
        return Party.load(path, secret), secret
    except MesateeError as exc:
        raise CommandError(f"{path}: {describe(exc)}") from None


def passphrase_file_option(f: F) -> F:
    return click.option(
        "--passphrase-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"Read the party file's passphrase from this file's first line (else ${PASSPHRASE_ENV}, else a prompt).",
    )(f)


# --------------------------------------------------------------------------- attestation policy


def attestation_options(f: F) -> F:
    """``--mrenclave``, ``--root``, ``--allow-software``: what a party (or a verifier) trusts of an enclave."""
    for option in reversed(
        (
            click.option(
                "--mrenclave",
                type=MEASUREMENT,
                envvar="MESATEE_MRENCLAVE",
                required=True,
                help="The enclave build to trust (64 hex digits, as `mesatee node init` prints it). "
                "Env: MESATEE_MRENCLAVE.",
            ),
            click.option(
                "--root",
                "roots",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                multiple=True,
                envvar="MESATEE_ROOT",
                help="A trusted platform root certificate (PEM or DER; repeatable), e.g. from "
                "`mesatee platform export-root`. Env: MESATEE_ROOT (paths separated by ':').",
            ),
            click.option(
                "--allow-software",
                is_flag=True,
                envvar="MESATEE_ALLOW_SOFTWARE",
                help="Accept the software platform (no hardware isolation: for development and tests). "
                "Env: MESATEE_ALLOW_SOFTWARE=1.",
            ),
        )
    ):
        f = option(f)
    return f


def attestation_policy(mrenclave: bytes, roots: tuple[Path, ...], allow_software: bool) -> AttestationPolicy:
    return AttestationPolicy(
        mrenclave=mrenclave,
        allow_software=allow_software,
        trusted_roots=tuple(path.read_bytes() for path in roots),
    )


# --------------------------------------------------------------------------- a party's session with a node


def open_node(path: Path, *, workers: int = 0) -> Node:
    """An existing node folder (a typo must not create an empty node), with ``workers`` enclave workers."""
    if not (path / "node.db").is_file():
        raise CommandError(f"{path}: no node here (create one with `mesatee node init {path}`)")
    return mesatee.Node(path, workers=workers)


@dataclass(frozen=True)
class Session:
    """A party's client of a node, and how to save the party file back."""

    client: Client
    party_file: Path
    passphrase: str

    @property
    def party(self) -> Party:
        return self.client.party

    def save_party(self) -> None:
        """Save the party file (its keyring changed), atomically."""
        self.party.save(self.party_file, self.passphrase)


@dataclass(frozen=True)
class SessionOptions:
    """The options of a party's command, before anything is opened."""

    party_file: Path
    passphrase_file: Path | None
    node: str
    policy: AttestationPolicy

    @contextmanager
    def open(self, *, workers: int = 0) -> Iterator[Session]:
        """Load the party, connect to the node (a folder opened with ``workers``, or a URL), and close it after."""
        party, secret = load_party(self.party_file, self.passphrase_file)
        opened: Node | None = None
        target: NodeAPI | str = self.node
        if not self.node.startswith(("http://", "https://")):
            target = opened = open_node(Path(self.node), workers=workers)
        try:
            yield Session(mesatee.Client(target, party, self.policy), self.party_file, secret)
        finally:
            if opened is not None:
                opened.close()


def session_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Give the command ``--party``, the passphrase, ``--node`` and the attestation options, as ``session``."""

    @functools.wraps(f)
    def command(
        *,
        party: Path,
        passphrase_file: Path | None,
        node: str,
        mrenclave: bytes,
        roots: tuple[Path, ...],
        allow_software: bool,
        **kwargs: Any,
    ) -> Any:
        options = SessionOptions(party, passphrase_file, node, attestation_policy(mrenclave, roots, allow_software))
        return f(session=options, **kwargs)

    command = attestation_options(command)
    command = click.option(
        "--node",
        envvar="MESATEE_NODE",
        required=True,
        help="The node: its folder (opened in this process) or its http(s) URL. Env: MESATEE_NODE.",
    )(command)
    command = passphrase_file_option(command)
    return click.option(
        "--party",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="MESATEE_PARTY",
        required=True,
        help="This party's file (from `mesatee party create`). Env: MESATEE_PARTY.",
    )(command)


def workers_option(default: int) -> Callable[[F], F]:
    return click.option(
        "--workers",
        type=click.IntRange(0, 256),
        default=default,
        show_default=True,
        help="Enclave workers to run in this process when --node is a folder (0: a `mesatee node run` runs tasks).",
    )
