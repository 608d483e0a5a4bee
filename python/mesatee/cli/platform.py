"""``mesatee platform``: the software platform's folder (its seal root, attestation key and root certificate)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import mesatee
from mesatee.cli.common import MesateeGroup, when, write_output

_HOME = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MESATEE_HOME",
    help="The platform folder. Env: MESATEE_HOME; default: $XDG_DATA_HOME/mesatee/platform, "
    "else ~/.local/share/mesatee/platform.",
)


def _shown_folder(home: Path | None) -> str:
    # Mirrors SoftwarePlatform::default_folder, for display only: the library resolves the folder itself.
    if home is not None:
        return str(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "mesatee" / "platform")


def _fingerprint(certificate: x509.Certificate) -> str:
    return "sha256:" + hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _root(home: Path | None) -> x509.Certificate:
    """The platform's root certificate, creating the platform on first use."""
    return x509.load_der_x509_certificate(mesatee.platform_root_certificate(home))


@click.group(cls=MesateeGroup)
def platform() -> None:
    """The software platform: create it, show it, export its root for verifiers."""


@platform.command()
@_HOME
def init(home: Path | None) -> None:
    """Create the platform folder (mode 0700) if it is missing, and print where it is."""
    root = _root(home)
    click.echo(f"platform: {_shown_folder(home)}")
    click.echo(f"root:     {_fingerprint(root)}")


@platform.command()
@_HOME
def show(home: Path | None) -> None:
    """Show the platform's root certificate and the identity of this package's enclave on it."""
    root = _root(home)
    with mesatee.Enclave(platform_dir=home) as enclave:
        identity = enclave.identity
    click.echo(f"platform:         {_shown_folder(home)} ({identity.platform})")
    click.echo(f"root subject:     {root.subject.rfc4514_string()}")
    click.echo(f"root fingerprint: {_fingerprint(root)}")
    click.echo(
        f"root valid:       {when(root.not_valid_before_utc.timestamp())} to "
        f"{when(root.not_valid_after_utc.timestamp())}"
    )
    click.echo(f"mrenclave:        {identity.mrenclave.hex()}")
    click.echo(f"mrsigner:         {identity.mrsigner.hex()}")
    click.echo(f"product id:       {identity.product_id}, security version {identity.security_version}")
    click.echo(f"debug:            {'yes' if identity.debug else 'no'}")


@platform.command("export-root")
@_HOME
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The PEM file.")
def export_root(home: Path | None, output: Path) -> None:
    """Write the platform's root certificate as PEM, for the parties to trust (`--root`)."""
    write_output(output, _root(home).public_bytes(serialization.Encoding.PEM))
    click.echo(f"wrote {output}")
