"""A content-addressed store of blobs (the node keeps ciphertext only: encrypted datasets and outputs).

A blob's id is the SHA-256 of its bytes, in lowercase hex, and it lives at
``<folder>/<id[0:2]>/<id[2:4]>/<id>``. Writes stream the data in chunks into a
temporary file in the destination folder, fsync it, rename it into place and
fsync the folder, so a blob is either wholly present or absent, also after a
crash. A file already on the store's filesystem is adopted instead: hashed,
fsynced and hard-linked into place the same way, its bytes never copied.
Every read verifies the digest: a blob that does not hash to its id is
reported (:class:`~mesatee.errors.StorageError`) and never served.

Several processes may share one store: writes of the same blob race to rename
identical bytes, which is harmless.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mesatee.errors import InvalidArgumentError, NotFoundError, StorageError

__all__ = ["CHUNK_SIZE", "BlobReader", "BlobStore", "check_blob_id"]

CHUNK_SIZE = 1 << 20
_BLOB_ID = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".tmp-"


def check_blob_id(blob_id: object) -> str:
    """A blob id: 64 lowercase hex digits (SHA-256); anything else is refused before it touches a path."""
    if not isinstance(blob_id, str) or not _BLOB_ID.fullmatch(blob_id):
        raise InvalidArgumentError(f"blob id {str(blob_id)[:80]!r} is not 64 lowercase hex digits")
    return blob_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobReader(io.RawIOBase):
    """A read-only stream over one blob that verifies its digest as it is read.

    Reaching the end of a blob whose bytes do not hash to its id raises
    :class:`StorageError` instead of returning end-of-file, so a reader that
    consumes the stream to its end never accepts corrupted bytes. Callers who
    must not act on any byte before it is verified use :meth:`BlobStore.get` or
    :meth:`BlobStore.verify` first.
    """

    def __init__(self, path: Path, blob_id: str) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._blob_id = blob_id
        self._hash = hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._file.readinto(buffer)
        if n:
            self._hash.update(memoryview(buffer)[:n])
            return n
        if not self._verified:
            if self._hash.hexdigest() != self._blob_id:
                raise StorageError(f"blob {self._blob_id} is corrupted: its content does not hash to its id")
            self._verified = True
        return 0

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class BlobStore:
    """Blobs in ``folder`` (created mode 0700 if missing), addressed by the SHA-256 of their bytes."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        blob_id = check_blob_id(blob_id)
        return self.folder / blob_id[:2] / blob_id[2:4] / blob_id

    # ----------------------------------------------------------------------- writing

    def put(self, data: bytes | bytearray | memoryview | BinaryIO, *, max_size: int | None = None) -> str:
        """Store ``data`` (bytes, or a binary stream read in chunks) and return its id; idempotent.

        ``max_size`` refuses (``InvalidArgumentError``) a stream longer than that many bytes,
        leaving nothing behind.
        """
        if isinstance(data, bytes | bytearray | memoryview):
            stream: BinaryIO = io.BytesIO(bytes(data))
        elif hasattr(data, "read"):
            stream = data
        else:
            raise InvalidArgumentError(f"data must be bytes or a binary stream, not {type(data).__name__}")
        tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            dir=self.folder, prefix=_TEMP_PREFIX, delete=False
        )
        tmp_path = Path(tmp.name)
        try:
            digest = hashlib.sha256()
            size = 0
            with tmp:
                os.fchmod(tmp.fileno(), 0o600)
                while chunk := stream.read(CHUNK_SIZE):
                    if not isinstance(chunk, bytes | bytearray | memoryview):
                        raise InvalidArgumentError(f"the stream returned {type(chunk).__name__}, not bytes")
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise InvalidArgumentError(f"the blob exceeds the limit of {max_size} bytes")
                    digest.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            return self._place(tmp_path, digest.hexdigest())
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def adopt(self, path: str | os.PathLike[str]) -> str:
        """Store the file at ``path`` without copying it: hashed (its id, returned), fsynced, hard-linked into place.

        The file stays where it is (removing it is the caller's) and shares its bytes with the blob from then on:
        it must not be written again. A file on another filesystem, or one without hard links, is copied (:meth:`put`).
        """
        tmp_path = self.folder / f"{_TEMP_PREFIX}{secrets.token_hex(12)}"
        try:
            os.link(path, tmp_path)  # first, so that what is hashed is the inode that is placed
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):
                raise
            with open(path, "rb") as stream:
                return self.put(stream)
        try:
            os.chmod(tmp_path, 0o600)
            with open(tmp_path, "rb") as stream:
                blob_id = hashlib.file_digest(stream, "sha256").hexdigest()
                os.fsync(stream.fileno())
            return self._place(tmp_path, blob_id)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def _place(self, tmp_path: Path, blob_id: str) -> str:
        """Rename a complete, fsynced temporary file (whose bytes hash to ``blob_id``) into place: atomic, durable."""
        final = self.path(blob_id)
        if final.exists() and self._intact(final, blob_id):
            tmp_path.unlink()
            return blob_id
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(tmp_path, final)  # also replaces a corrupted copy with good bytes
        _fsync_dir(final.parent)
        return blob_id

    # ----------------------------------------------------------------------- reading

    def _intact(self, path: Path, blob_id: str) -> bool:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                digest.update(chunk)
        return digest.hexdigest() == blob_id

    def _existing(self, blob_id: str) -> Path:
        path = self.path(blob_id)
        if not path.is_file():
            raise NotFoundError(f"no blob {blob_id}")
        return path

    def verify(self, blob_id: str) -> None:
        """Raise ``StorageError`` unless the stored blob hashes to its id (``NotFoundError`` if absent)."""
        if not self._intact(self._existing(blob_id), blob_id):
            raise StorageError(f"blob {blob_id} is corrupted: its content does not hash to its id")

    def get(self, blob_id: str) -> bytes:
        """The blob's bytes, verified before they are returned."""
        data = self._existing(blob_id).read_bytes()
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise StorageError(f"blob {blob_id} is corrupted: its content does not hash to its id")
        return data

    def open(self, blob_id: str) -> BlobReader:
        """A stream over the blob, verified before it is handed out and again as it is read to its end."""
        path = self._existing(blob_id)
        self.verify(blob_id)
        return BlobReader(path, blob_id)

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def size(self, blob_id: str) -> int:
        return self._existing(blob_id).stat().st_size

    def delete(self, blob_id: str) -> bool:
        """Remove the blob; True if it was there. Empty fan-out folders are left for later writes."""
        path = self.path(blob_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def __iter__(self) -> Iterator[str]:
        """The ids of the stored blobs (not verified)."""
        for path in sorted(self.folder.glob("??/??/*")):
            if _BLOB_ID.fullmatch(path.name) and path.parent.name == path.name[2:4]:
                yield path.name

    def remove_temporaries(self) -> int:
        """Delete temporary files left by interrupted writes (only call when no write is in progress)."""
        removed = 0
        for path in self.folder.glob(_TEMP_PREFIX + "*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed
