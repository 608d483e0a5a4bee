"""Encrypted files (see "Encrypted files" in ``docs/formats.md``).

``MTEF`` version 1: a 16-byte header, then AES-256-GCM over fixed-size chunks
in the STREAM construction (each chunk's index and a final-chunk flag are in
its nonce, the header is every chunk's AAD), so files of any size stream in
constant memory and truncation, reordering, duplication and splicing fail.

Header (16 bytes)::

    0  4  magic "MTEF"
    4  1  version = 1
    5  1  algorithm = 1 (AES-256-GCM)
    6  1  reserved = 0
    7  1  log2(chunk_size), 12..24
    8  7  nonce_prefix
    15 1  reserved = 0

Teaclave's ``aes-gcm-128`` / ``aes-gcm-256`` files (one AES-GCM ciphertext and
its tag, a 12-byte IV beside the key, AAD = 8 zero bytes) are read and written
by :func:`teaclave_decrypt` and :func:`teaclave_encrypt`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mesatee.core.binary import Reader, require_bytes
from mesatee.errors import CryptoError, FormatError, InvalidArgumentError

__all__ = [
    "ALGORITHM_AES_256_GCM",
    "DEFAULT_CHUNK_SIZE",
    "FORMATS",
    "FORMAT_MESATEE",
    "FORMAT_TEACLAVE_128",
    "FORMAT_TEACLAVE_256",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_CHUNKS",
    "MAX_CHUNK_LOG2",
    "MIN_CHUNK_LOG2",
    "NONCE_PREFIX_SIZE",
    "TAG_SIZE",
    "TEACLAVE_AAD",
    "TEACLAVE_IV_SIZE",
    "VERSION",
    "EncryptedFile",
    "FileHeader",
    "atomic_write_bytes",
    "decrypt_bytes",
    "decrypt_file",
    "decrypt_stream",
    "decrypt_to_file",
    "encrypt_bytes",
    "encrypt_file",
    "encrypt_stream",
    "teaclave_decrypt",
    "teaclave_encrypt",
]

MAGIC = b"MTEF"
VERSION = 1
ALGORITHM_AES_256_GCM = 1
HEADER_SIZE = 16
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
KEY_SIZE = 32
MIN_CHUNK_LOG2 = 12
MAX_CHUNK_LOG2 = 24
DEFAULT_CHUNK_SIZE = 1 << 16
MAX_CHUNKS = 1 << 32

FORMAT_MESATEE = "mesatee-v1"
FORMAT_TEACLAVE_128 = "teaclave-aes-gcm-128"
FORMAT_TEACLAVE_256 = "teaclave-aes-gcm-256"
#: The input formats a manifest may name, and the size of each one's key.
FORMATS: MappingProxyType[str, int] = MappingProxyType(
    {FORMAT_MESATEE: KEY_SIZE, FORMAT_TEACLAVE_128: 16, FORMAT_TEACLAVE_256: 32}
)
TEACLAVE_IV_SIZE = 12
TEACLAVE_AAD = bytes(8)

_WHAT = "encrypted file"


def _file_key(key: object) -> AESGCM:
    raw = require_bytes("key", key)
    if len(raw) != KEY_SIZE:
        raise InvalidArgumentError(f"the file key must be {KEY_SIZE} bytes, got {len(raw)}")
    return AESGCM(raw)


def _chunk_log2(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise InvalidArgumentError(f"chunk_size must be an int, not {type(chunk_size).__name__}")
    log2 = chunk_size.bit_length() - 1
    if chunk_size <= 0 or chunk_size != 1 << log2 or not MIN_CHUNK_LOG2 <= log2 <= MAX_CHUNK_LOG2:
        raise InvalidArgumentError(
            f"chunk_size must be a power of two from 2**{MIN_CHUNK_LOG2} to 2**{MAX_CHUNK_LOG2}, got {chunk_size}"
        )
    return log2


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class FileHeader:
    """The 16-byte header of an ``MTEF`` file."""

    chunk_size: int
    nonce_prefix: bytes

    def __post_init__(self) -> None:
        _chunk_log2(self.chunk_size)
        prefix = require_bytes("nonce_prefix", self.nonce_prefix)
        if len(prefix) != NONCE_PREFIX_SIZE:
            raise InvalidArgumentError(f"nonce_prefix must be {NONCE_PREFIX_SIZE} bytes, got {len(prefix)}")
        object.__setattr__(self, "nonce_prefix", prefix)

    def to_bytes(self) -> bytes:
        log2 = self.chunk_size.bit_length() - 1
        return MAGIC + bytes((VERSION, ALGORITHM_AES_256_GCM, 0, log2)) + self.nonce_prefix + b"\0"

    @classmethod
    def from_bytes(cls, data: bytes) -> FileHeader:
        """Parse exactly :data:`HEADER_SIZE` bytes; ``FormatError`` naming the bad field."""
        r = Reader(data, _WHAT)
        if r.remaining < HEADER_SIZE:
            r.fail(f"truncated header ({r.remaining} of {HEADER_SIZE} bytes)")
        r.expect(MAGIC, "magic")
        version = r.u8("version")
        if version != VERSION:
            r.fail(f"unsupported version {version} at offset 4 (expected {VERSION})")
        algorithm = r.u8("algorithm")
        if algorithm != ALGORITHM_AES_256_GCM:
            r.fail(f"unknown algorithm {algorithm} at offset 5 (expected {ALGORITHM_AES_256_GCM}, AES-256-GCM)")
        r.expect(b"\0", "reserved byte")
        log2 = r.u8("chunk size")
        if not MIN_CHUNK_LOG2 <= log2 <= MAX_CHUNK_LOG2:
            r.fail(f"chunk size 2**{log2} at offset 7 is outside 2**{MIN_CHUNK_LOG2}..2**{MAX_CHUNK_LOG2}")
        prefix = r.take(NONCE_PREFIX_SIZE, "nonce prefix")
        r.expect(b"\0", "reserved byte")
        r.expect_end()
        return cls(1 << log2, prefix)

    def nonce(self, index: int, final: bool) -> bytes:
        return self.nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


# --------------------------------------------------------------------------- streams


def _read_full(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream (short reads of pipes are retried)."""
    data = src.read(n)
    if data is None:
        raise InvalidArgumentError("src is a non-blocking stream with no data ready")
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(dst: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = dst.write(view)
        if written is None:
            raise InvalidArgumentError("dst is a non-blocking stream that is not ready")
        view = view[written:]


def _encrypt(
    src: BinaryIO, dst: BinaryIO, key: bytes, chunk_size: int, nonce_prefix: bytes | None
) -> tuple[bytes, int]:
    aead = _file_key(key)
    if nonce_prefix is None:
        nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
    header = FileHeader(chunk_size, nonce_prefix)
    head = header.to_bytes()
    digest = hashlib.sha256(head)
    _write_all(dst, head)
    size = 0
    index = 0
    current = _read_full(src, chunk_size)
    while True:
        following = _read_full(src, chunk_size) if len(current) == chunk_size else b""
        final = not following
        if index >= MAX_CHUNKS:
            raise InvalidArgumentError(f"the data needs more than {MAX_CHUNKS} chunks of {chunk_size} bytes")
        sealed = aead.encrypt(header.nonce(index, final), current, head)
        digest.update(sealed)
        _write_all(dst, sealed)
        size += len(current)
        if final:
            return digest.digest(), size
        current = following
        index += 1


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
) -> bytes:
    """Encrypt all of ``src`` into ``dst`` as an ``MTEF`` file; return its dataset id.

    The dataset id is the SHA-256 of every byte written (header included).
    Memory stays within a few chunks whatever the size. ``nonce_prefix`` is
    random when not given; pass one only for test vectors (a prefix must never
    be reused with the same key).
    """
    return _encrypt(src, dst, key, chunk_size, nonce_prefix)[0]


def _open_chunk(
    aead: AESGCM, header: FileHeader, head: bytes, index: int, sealed: bytes | memoryview, final: bool
) -> bytes:
    try:
        return aead.decrypt(header.nonce(index, final), sealed, head)
    except InvalidTag:
        pass
    # Not what its position says: tell a truncation or trailing data (the chunk opens with
    # the other final flag) from tampering. The chunk authenticates, so this is no oracle.
    try:
        aead.decrypt(header.nonce(index, not final), sealed, head)
    except InvalidTag:
        raise CryptoError(
            f"{_WHAT}: chunk {index} failed authentication (tampered, reordered, spliced or wrong key)"
        ) from None
    if final:
        raise FormatError(f"{_WHAT}: truncated: the file ends after chunk {index}, which is not the final chunk")
    raise FormatError(f"{_WHAT}: trailing data after the final chunk {index}")


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes) -> int:
    """Decrypt an ``MTEF`` file from ``src`` into ``dst``; return the plaintext bytes written.

    Each chunk is authenticated before its plaintext is written, but a failure
    can come after earlier chunks were written: write to a temporary place and
    keep it only on success (as :func:`decrypt_file` does). Raises
    ``FormatError`` for structural defects (header, truncation, trailing data,
    too many chunks) and ``CryptoError`` naming the chunk that failed
    authentication. Memory stays within a few chunks.
    """
    aead = _file_key(key)
    head = _read_full(src, HEADER_SIZE)
    header = FileHeader.from_bytes(head)
    sealed_size = header.chunk_size + TAG_SIZE
    written = 0
    index = 0
    current = _read_full(src, sealed_size)
    while True:
        if index >= MAX_CHUNKS:
            raise FormatError(f"{_WHAT}: more than {MAX_CHUNKS} chunks")
        if len(current) < TAG_SIZE:
            where = "no chunk after the header" if index == 0 and not current else f"chunk {index} is cut short"
            raise FormatError(f"{_WHAT}: truncated: {where} ({len(current)} bytes, less than a tag)")
        following = _read_full(src, sealed_size) if len(current) == sealed_size else b""
        final = not following
        plaintext = _open_chunk(aead, header, head, index, current, final)
        _write_all(dst, plaintext)
        written += len(plaintext)
        if final:
            return written
        current = following
        index += 1


def encrypt_bytes(
    data: bytes, key: bytes, *, chunk_size: int = DEFAULT_CHUNK_SIZE, nonce_prefix: bytes | None = None
) -> bytes:
    """``data`` as a complete ``MTEF`` file under ``key``: the same bytes :func:`encrypt_stream` writes.

    In memory: chunks are sealed from views of ``data`` and joined once (no
    stream copies, and no dataset id computed that nobody asked for).
    """
    aead = _file_key(key)
    header = FileHeader(chunk_size, os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix)
    head = header.to_bytes()
    view = memoryview(require_bytes("data", data))
    chunks = max(1, -(-len(view) // chunk_size))  # a last full chunk is the final one
    if chunks > MAX_CHUNKS:
        raise InvalidArgumentError(f"the data needs more than {MAX_CHUNKS} chunks of {chunk_size} bytes")
    sealed = [head]
    for index in range(chunks):
        piece = view[index * chunk_size : (index + 1) * chunk_size]
        sealed.append(aead.encrypt(header.nonce(index, index == chunks - 1), piece, head))
    return b"".join(sealed)


def decrypt_bytes(data: bytes, key: bytes) -> bytes:
    """The plaintext of a complete ``MTEF`` file (errors as :func:`decrypt_stream`), from views of ``data``."""
    aead = _file_key(key)
    view = memoryview(require_bytes("data", data))
    head = bytes(view[:HEADER_SIZE])
    header = FileHeader.from_bytes(head)
    body = view[HEADER_SIZE:]
    sealed_size = header.chunk_size + TAG_SIZE
    chunks = max(1, -(-len(body) // sealed_size))
    if chunks > MAX_CHUNKS:
        raise FormatError(f"{_WHAT}: more than {MAX_CHUNKS} chunks")
    plain = []
    # In the stream reader's order, so that both report the same error for the same file.
    for index in range(chunks):
        sealed = body[index * sealed_size : (index + 1) * sealed_size]
        if len(sealed) < TAG_SIZE:
            where = "no chunk after the header" if not len(body) else f"chunk {index} is cut short"
            raise FormatError(f"{_WHAT}: truncated: {where} ({len(sealed)} bytes, less than a tag)")
        plain.append(_open_chunk(aead, header, head, index, sealed, index == chunks - 1))
    return b"".join(plain)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def _atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A new file (mode 0600) in ``path``'s folder that replaces ``path`` only if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename), mode 0600."""
    data = require_bytes("data", data)
    with _atomic_output(path) as out:
        _write_all(out, data)


@dataclass(frozen=True)
class EncryptedFile:
    """A file encrypted by :func:`encrypt_file`: its dataset id, its key and its plaintext size in bytes."""

    dataset_id: bytes
    key: bytes = field(repr=False)
    size: int


def encrypt_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptedFile:
    """Encrypt ``src_path`` under a fresh random key into ``dst_path`` (written atomically, mode 0600)."""
    _chunk_log2(chunk_size)
    key = os.urandom(KEY_SIZE)
    with open(src_path, "rb") as src, _atomic_output(dst_path) as dst:
        dataset_id, size = _encrypt(src, dst, key, chunk_size, None)
    return EncryptedFile(dataset_id, key, size)


class _CheckedSource(io.RawIOBase):
    """A stream read through: hashed (SHA-256), and refused once it runs past ``max_size`` bytes."""

    def __init__(self, src: BinaryIO, max_size: int | None) -> None:
        super().__init__()
        self._src, self._max_size = src, max_size
        self.size = 0
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._src.read(len(buffer))
        if not data:
            return 0
        self.size += len(data)
        if self._max_size is not None and self.size > self._max_size:
            raise FormatError(f"{_WHAT}: longer than the {self._max_size} bytes expected")
        self.hash.update(data)
        memoryview(buffer)[: len(data)] = data
        return len(data)


def decrypt_to_file(
    src: BinaryIO,
    dst_path: str | os.PathLike[str],
    key: bytes,
    *,
    digest: bytes | None = None,
    max_size: int | None = None,
) -> int:
    """Decrypt an ``MTEF`` file read from ``src`` into ``dst_path`` (mode 0600); return the plaintext size.

    The plaintext goes to a temporary file in ``dst_path``'s folder, renamed to
    ``dst_path`` only when the whole file authenticated and, when ``digest`` is
    given, the bytes read hash (SHA-256) to it: on any failure no output file is
    left (a file already at ``dst_path`` stays as it was). ``max_size`` refuses
    a longer ``src`` as soon as it runs past it. Memory stays within a few chunks.
    """
    _file_key(key)
    checked = _CheckedSource(src, max_size) if digest is not None or max_size is not None else None
    with _atomic_output(dst_path) as dst:
        # decrypt_stream reads to the end of src (it knows the final chunk by the end), so the hash covers every byte.
        size = decrypt_stream(src if checked is None else checked, dst, key)  # type: ignore[arg-type]
        if digest is not None and checked is not None and checked.hash.digest() != digest:
            raise CryptoError(f"{_WHAT}: its bytes do not hash to the expected digest (tampered or swapped)")
    return size


def decrypt_file(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str], key: bytes) -> int:
    """Decrypt ``src_path`` into ``dst_path`` (mode 0600); return the plaintext size (:func:`decrypt_to_file`)."""
    with open(src_path, "rb") as src:
        return decrypt_to_file(src, dst_path, key)


# --------------------------------------------------------------------------- Teaclave


def _teaclave_args(key: object, iv: object) -> tuple[AESGCM, bytes]:
    raw = require_bytes("key", key)
    if len(raw) not in (16, 32):
        raise InvalidArgumentError(f"a Teaclave file key is 16 or 32 bytes, got {len(raw)}")
    nonce = require_bytes("iv", iv)
    if len(nonce) != TEACLAVE_IV_SIZE:
        raise InvalidArgumentError(f"a Teaclave IV is {TEACLAVE_IV_SIZE} bytes, got {len(nonce)}")
    return AESGCM(raw), nonce


def teaclave_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    """A Teaclave ``aes-gcm-128``/``aes-gcm-256`` file (by key length): ciphertext ‖ tag, AAD = 8 zero bytes."""
    aead, nonce = _teaclave_args(key, iv)
    return aead.encrypt(nonce, require_bytes("data", data), TEACLAVE_AAD)


def teaclave_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    """The plaintext of a Teaclave ``aes-gcm-128``/``aes-gcm-256`` file."""
    aead, nonce = _teaclave_args(key, iv)
    data = require_bytes("data", data)
    if len(data) < TAG_SIZE:
        raise FormatError(f"Teaclave file: {len(data)} bytes is shorter than its {TAG_SIZE}-byte tag")
    try:
        return aead.decrypt(nonce, data, TEACLAVE_AAD)
    except InvalidTag:
        raise CryptoError("Teaclave file failed authentication (tampered, wrong key or wrong IV)") from None
