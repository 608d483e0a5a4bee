"""The enclave signature file (``<image>.sig``; see ``docs/formats.md``), and a CLI to make and show it.

    python -m mesatee.core.signing sign --image IMG --config CONF.toml --key KEY.pem [--out IMG.sig]
    python -m mesatee.core.signing show IMG.sig

Pure Python: the build runs it before any native library exists.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import struct
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesatee.core.binary import Reader
from mesatee.errors import EnclaveLoadError, InvalidArgumentError, MesateeError, Status

__all__ = [
    "SIGNATURE_FILE_SIZE",
    "SIGNATURE_FLAG_DEBUG",
    "SIGNATURE_MAGIC",
    "SIGNATURE_VERSION",
    "SIGNED_SIZE",
    "EnclaveConfig",
    "EnclaveSignature",
    "load_or_create_signing_key",
    "main",
    "sign_image",
]

SIGNATURE_MAGIC = b"MTSG"
SIGNATURE_VERSION = 1
SIGNATURE_FLAG_DEBUG = 0x01
SIGNED_SIZE = 84
SIGNATURE_FILE_SIZE = 148
_CHUNK = 1 << 20
_U16_MAX = 0xFFFF
_U64_MAX = (1 << 64) - 1


def _check_uint(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an integer, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise InvalidArgumentError(f"{name} must be in 0..{maximum}, got {value}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be true or false, not {type(value).__name__}")


@dataclass(frozen=True)
class EnclaveConfig:
    """The signing configuration of an enclave (like an ``oesign`` config)."""

    product_id: int
    security_version: int
    debug: bool

    def __post_init__(self) -> None:
        _check_uint("product_id", self.product_id, _U16_MAX)
        _check_uint("security_version", self.security_version, _U16_MAX)
        _check_bool("debug", self.debug)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> EnclaveConfig:
        """Read a TOML file with exactly the keys ``product_id``, ``security_version`` and ``debug``."""
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgumentError(f"{os.fspath(path)}: not valid TOML: {exc}") from None
        expected = {"product_id", "security_version", "debug"}
        unknown = sorted(table.keys() - expected)
        missing = sorted(expected - table.keys())
        if unknown or missing:
            problems = [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
            problems += [f"missing key(s) {', '.join(missing)}"] if missing else []
            raise InvalidArgumentError(f"{os.fspath(path)}: {'; '.join(problems)}")
        try:
            return cls(table["product_id"], table["security_version"], table["debug"])
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{os.fspath(path)}: {exc}") from None


@dataclass(frozen=True)
class EnclaveSignature:
    """The signed identity of an enclave image: what the loader checks before mapping it."""

    product_id: int
    security_version: int
    debug: bool
    image_size: int
    mrenclave: bytes
    signer_public_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_uint("product_id", self.product_id, _U16_MAX)
        _check_uint("security_version", self.security_version, _U16_MAX)
        _check_bool("debug", self.debug)
        _check_uint("image_size", self.image_size, _U64_MAX)
        for name, size in (("mrenclave", 32), ("signer_public_key", 32), ("signature", 64)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise InvalidArgumentError(f"{name} must be {size} bytes")

    @property
    def mrsigner(self) -> bytes:
        return hashlib.sha256(self.signer_public_key).digest()

    def signed_bytes(self) -> bytes:
        """Bytes 0..84 of the file: what the signature covers."""
        return _signed_bytes(
            self.product_id,
            self.security_version,
            self.debug,
            self.image_size,
            self.mrenclave,
            self.signer_public_key,
        )

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> EnclaveSignature:
        """Parse strictly and verify the signature; any defect raises ``SIGNATURE_INVALID``."""
        r = Reader(data, "enclave signature", EnclaveLoadError, Status.SIGNATURE_INVALID)
        if r.remaining != SIGNATURE_FILE_SIZE:
            r.fail(f"{r.remaining} bytes, expected {SIGNATURE_FILE_SIZE}")
        r.expect(SIGNATURE_MAGIC, "magic")
        version = r.u16("version")
        if version != SIGNATURE_VERSION:
            r.fail(f"unsupported version {version} (expected {SIGNATURE_VERSION})")
        flags = r.u8("flags")
        if flags & ~SIGNATURE_FLAG_DEBUG:
            r.fail(f"reserved flag bits set: {flags:#04x}")
        r.expect(b"\0", "reserved byte")
        product_id = r.u16("product_id")
        security_version = r.u16("security_version")
        image_size = r.u64("image size")
        mrenclave = r.take(32, "mrenclave")
        public_key = r.take(32, "signer public key")
        signature = r.take(64, "signature")
        r.expect_end()
        sig = cls(
            product_id,
            security_version,
            bool(flags & SIGNATURE_FLAG_DEBUG),
            image_size,
            mrenclave,
            public_key,
            signature,
        )
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, sig.signed_bytes())
        except (InvalidSignature, ValueError):
            r.fail("the signature does not verify under the signer's key")
        return sig


def _signed_bytes(
    product_id: int, security_version: int, debug: bool, image_size: int, mrenclave: bytes, public_key: bytes
) -> bytes:
    flags = SIGNATURE_FLAG_DEBUG if debug else 0
    header = SIGNATURE_MAGIC + struct.pack(
        "<HBBHHQ", SIGNATURE_VERSION, flags, 0, product_id, security_version, image_size
    )
    return header + mrenclave + public_key


def _raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_image(image_path: str | os.PathLike[str], key: Ed25519PrivateKey, config: EnclaveConfig) -> EnclaveSignature:
    """Measure the image (SHA-256 of the file) and sign its identity with ``key``."""
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgumentError("the signing key must be an Ed25519 private key")
    digest = hashlib.sha256()
    size = 0
    with open(image_path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    mrenclave = digest.digest()
    public_key = _raw_public_key(key)
    signed = _signed_bytes(config.product_id, config.security_version, config.debug, size, mrenclave, public_key)
    return EnclaveSignature(
        config.product_id,
        config.security_version,
        config.debug,
        size,
        mrenclave,
        public_key,
        key.sign(signed),
    )


def _write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` exists; False if it already did."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            # link rather than rename: a key a concurrent build already signed with is never replaced.
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            os.rename(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_create_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the Ed25519 signing key (unencrypted PKCS#8 PEM), creating it (mode 0600) if missing."""
    path = Path(path)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if _write_new_file(path, pem, 0o600):
            return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidArgumentError(f"{path}: not an Ed25519 key")
    return loaded


# --------------------------------------------------------------------------- CLI


def _show(sig: EnclaveSignature) -> str:
    return "\n".join(
        [
            f"product_id: {sig.product_id}",
            f"security_version: {sig.security_version}",
            f"debug: {str(sig.debug).lower()}",
            f"image_size: {sig.image_size}",
            f"mrenclave: {sig.mrenclave.hex()}",
            f"mrsigner: {sig.mrsigner.hex()}",
            f"signer_public_key: {sig.signer_public_key.hex()}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesatee.core.signing", description="Sign an enclave image or show a signature file."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sign = commands.add_parser("sign", help="sign an enclave image (creates the key if missing)")
    sign.add_argument("--image", required=True, type=Path)
    sign.add_argument("--config", required=True, type=Path, help="TOML: product_id, security_version, debug")
    sign.add_argument("--key", required=True, type=Path, help="Ed25519 PKCS#8 PEM; created if missing")
    sign.add_argument("--out", type=Path, help="default: IMAGE.sig")
    show = commands.add_parser("show", help="verify a signature file and print its fields")
    show.add_argument("signature", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "sign":
            config = EnclaveConfig.from_toml(args.config)
            key = load_or_create_signing_key(args.key)
            sig = sign_image(args.image, key, config)
            out: Path = args.out or args.image.with_name(args.image.name + ".sig")
            tmp = out.with_name(f".{out.name}.{secrets.token_hex(8)}.tmp")
            try:
                tmp.write_bytes(sig.to_bytes())
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
            print(f"mrenclave: {sig.mrenclave.hex()}\nmrsigner: {sig.mrsigner.hex()}")
        else:
            try:
                sig = EnclaveSignature.from_bytes(args.signature.read_bytes())
            except EnclaveLoadError as exc:
                raise EnclaveLoadError(f"{args.signature}: {exc}", exc.status) from None
            print(_show(sig))
    except MesateeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
