"""``mesatee file``: encrypt and decrypt files offline (MTEF, or Teaclave's aes-gcm files), as Teaclave's CLI did."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mesatee.cli.common import HexBytes, MesateeGroup, write_output
from mesatee.core import files

_FORMAT = click.option(
    "--format",
    "file_format",
    type=click.Choice(list(files.FORMATS)),
    default=files.FORMAT_MESATEE,
    show_default=True,
    help="mesatee-v1 (MTEF: chunked, streaming, 32-byte key) or Teaclave's one-shot aes-gcm files (with --iv).",
)
_IV = click.option("--iv", type=HexBytes(files.TEACLAVE_IV_SIZE), help="The 12-byte IV of a Teaclave file, in hex.")
_SRC = click.Path(exists=True, dir_okay=False, path_type=Path)
_DST = click.Path(dir_okay=False, path_type=Path)


def _teaclave_iv(file_format: str, iv: bytes | None, *, generate: bool) -> bytes:
    if file_format == files.FORMAT_MESATEE:
        if iv is not None:
            raise click.UsageError("--iv is for Teaclave files only: mesatee-v1 files carry their nonces")
        return b""
    if iv is None:
        if not generate:
            raise click.UsageError(f"a {file_format} file needs its --iv")
        return os.urandom(files.TEACLAVE_IV_SIZE)
    return iv


def _check_key_size(file_format: str, key: bytes) -> None:
    size = files.FORMATS[file_format]
    if len(key) != size:
        raise click.BadParameter(f"a {file_format} key is {size} bytes, not {len(key)}", param_hint="--key")


@click.group(cls=MesateeGroup)
def file() -> None:
    """Encrypt and decrypt files offline (no node, no enclave)."""


@file.command()
@click.argument("src", type=_SRC)
@click.argument("dst", type=_DST)
@_FORMAT
@click.option(
    "--key",
    type=HexBytes(16, 32, secret=True),
    help="Teaclave files: the key in hex (16 bytes for -128, 32 for -256; default: fresh). "
    "mesatee-v1 files always get a fresh key.",
)
@_IV
def encrypt(src: Path, dst: Path, file_format: str, key: bytes | None, iv: bytes | None) -> None:
    """Encrypt SRC into DST (mode 0600) and print the key to keep (and the IV and tag of a Teaclave file).

    The key printed is the only way to decrypt DST: store it as a secret.
    """
    nonce = _teaclave_iv(file_format, iv, generate=True)
    if file_format == files.FORMAT_MESATEE:
        if key is not None:
            raise click.UsageError("mesatee-v1 files are encrypted under a fresh key; --key is for Teaclave files")
        encrypted = files.encrypt_file(src, dst)
        click.echo(f"dataset id: {encrypted.dataset_id.hex()}")
        click.echo(f"key:        {encrypted.key.hex()}")
        return
    if key is None:
        key = os.urandom(files.FORMATS[file_format])
    _check_key_size(file_format, key)
    sealed = files.teaclave_encrypt(src.read_bytes(), key, nonce)
    write_output(dst, sealed)
    click.echo(f"key: {key.hex()}")
    click.echo(f"iv:  {nonce.hex()}")
    click.echo(f"tag: {sealed[-files.TAG_SIZE :].hex()}  (Teaclave's cmac)")


@file.command()
@click.argument("src", type=_SRC)
@click.argument("dst", type=_DST)
@click.option("--key", type=HexBytes(16, 32, secret=True), required=True, help="The file's key, in hex.")
@_FORMAT
@_IV
def decrypt(src: Path, dst: Path, key: bytes, file_format: str, iv: bytes | None) -> None:
    """Decrypt SRC into DST (mode 0600); nothing is written unless the whole file authenticates."""
    nonce = _teaclave_iv(file_format, iv, generate=False)
    _check_key_size(file_format, key)
    if file_format == files.FORMAT_MESATEE:
        size = files.decrypt_file(src, dst, key)
    else:
        plaintext = files.teaclave_decrypt(src.read_bytes(), key, nonce)
        write_output(dst, plaintext)
        size = len(plaintext)
    click.echo(f"decrypted {size} bytes into {dst}")
