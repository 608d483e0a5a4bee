"""``mesatee enclave verify``: check an enclave's evidence offline (pure Python, no node, no native library)."""

from __future__ import annotations

from pathlib import Path

import click

from mesatee.cli.common import NONCE, MesateeGroup, attestation_options, attestation_policy
from mesatee.core.attestation import verify_evidence


@click.group(cls=MesateeGroup)
def enclave() -> None:
    """Check enclaves' evidence."""


@enclave.command()
@click.argument("evidence_file", metavar="EVIDENCE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@attestation_options
@click.option(
    "--nonce",
    type=NONCE,
    help="The challenge you sent (hex); without it any nonce is accepted, so the evidence may be old.",
)
def verify(
    evidence_file: Path, mrenclave: bytes, roots: tuple[Path, ...], allow_software: bool, nonce: bytes | None
) -> None:
    """Verify EVIDENCE (from `mesatee node evidence`) and print the enclave's claims: its identity and keys."""
    if not roots:
        raise click.UsageError("give the trusted platform root with --root (from `mesatee platform export-root`)")
    if nonce is None:
        click.echo("warning: no --nonce: evidence made for any challenge is accepted (it may be replayed)", err=True)
    claims = verify_evidence(
        evidence_file.read_bytes(), attestation_policy(mrenclave, roots, allow_software), nonce=nonce
    )
    click.echo("evidence verified")
    click.echo(f"platform:        {claims.platform}{' (debug)' if claims.debug else ''}")
    click.echo(f"mrenclave:       {claims.mrenclave.hex()}")
    click.echo(f"mrsigner:        {claims.mrsigner.hex()}")
    click.echo(f"product id:      {claims.product_id}, security version {claims.security_version}")
    click.echo(f"hpke key:        {claims.hpke_public_key.hex()}")
    click.echo(f"signing key:     {claims.signing_public_key.hex()}")
    click.echo(f"nonce:           {claims.nonce.hex() or '-'}")
