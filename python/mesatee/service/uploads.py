"""The upload staging area: datasets on their way in, resumable, never visible as datasets.

An upload session is opened by a party's signed ``dataset.upload`` request
(checked by the node without consuming it) and is bound to that party and the
signed digest. Its bytes are appended in order to ``<upload id>.part``, in
``<node>/uploads/`` (mode 0700, files 0600), beside ``<upload id>.meta`` (the
session's canonical map, written last: a session exists once its meta does).
Committing hands the staged file to ``Node.upload_dataset_file`` with the
signed request, which hashes it, links it into the blob store (no copy) and
accepts the request with every check; only then is there a dataset. A
refused commit leaves the staged file as it was, for a retry.

A transfer holds the part's ``flock`` (a second one at once is refused), so
several service processes may share a node. Sessions idle for longer than
the time to live are removed (at start-up and whenever a session opens); a
killed server leaves its sessions to be resumed or to expire.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mesatee.core import canonical
from mesatee.errors import FormatError, InvalidArgumentError, NodeError, NotFoundError, PermissionDeniedError

__all__ = ["MAX_FORMAT", "UploadSession", "UploadStaging"]

MAX_FORMAT = 64  # characters of a dataset format name
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_META_FIELDS = {"party_id": bytes, "digest": bytes, "size": int, "format": str, "created_at": int}


@dataclass(frozen=True)
class UploadSession:
    """One dataset being uploaded: by whom, which bytes (their signed SHA-256) and how many."""

    upload_id: str
    party_id: bytes
    digest: bytes
    size: int
    format: str
    created_at: int

    def to_bytes(self) -> bytes:
        return canonical.encode({name: getattr(self, name) for name in _META_FIELDS})


class UploadStaging:
    """The sessions in ``folder``; ``max_size`` bytes per dataset, ``max_sessions`` open (``per_party`` each),
    each kept ``ttl`` seconds after its last transfer."""

    def __init__(self, folder: Path, *, max_size: int, max_sessions: int, per_party: int, ttl: float) -> None:
        self.folder = folder
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_size = max_size
        self.max_sessions = max_sessions
        self.per_party = per_party
        self.ttl = ttl

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFoundError(f"no upload {upload_id[:40]!r}")
        return self.folder / f"{upload_id}.part", self.folder / f"{upload_id}.meta"

    @contextmanager
    def _folder_lock(self) -> Iterator[None]:
        with open(self.folder / ".lock", "a+b") as lock:
            os.fchmod(lock.fileno(), 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ----------------------------------------------------------------------- sessions

    def open(self, party_id: bytes, digest: bytes, size: int, format: str) -> tuple[UploadSession, int]:
        """The party's session for these bytes (its existing one, to resume, or a new one) and its offset."""
        if isinstance(size, bool) or not 0 <= size <= self.max_size:
            raise InvalidArgumentError(f"an upload is 0 to {self.max_size} bytes, not {size}")
        if not 0 < len(format) <= MAX_FORMAT:
            raise InvalidArgumentError(f"a dataset format is 1 to {MAX_FORMAT} characters")
        with self._folder_lock():
            self._expire()
            sessions = list(self._sessions())
            for session in sessions:
                if session.party_id == party_id and session.digest == digest:
                    if (session.size, session.format) != (size, format):
                        raise InvalidArgumentError(
                            f"upload {session.upload_id} of these bytes was opened for {session.size} bytes of "
                            f"format {session.format!r}"
                        )
                    return session, self.offset(session)
            if len(sessions) >= self.max_sessions:
                raise NodeError(f"the node has {len(sessions)} uploads open, its limit: try again later")
            if sum(s.party_id == party_id for s in sessions) >= self.per_party:
                raise NodeError(f"the party has {self.per_party} uploads open, its limit: commit or let them expire")
            session = UploadSession(secrets.token_hex(16), party_id, digest, size, format, int(time.time()))
            part, meta = self._paths(session.upload_id)
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            staged = meta.with_suffix(".meta-new")
            staged.write_bytes(session.to_bytes())
            os.chmod(staged, 0o600)
            os.replace(staged, meta)
            return session, 0

    def session(self, upload_id: str) -> UploadSession:
        _part, meta = self._paths(upload_id)
        try:
            data = meta.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no upload {upload_id} (committed, expired, or never opened)") from None
        value = canonical.decode(data, max_size=4096)
        if not isinstance(value, dict) or set(value) != set(_META_FIELDS):
            raise FormatError(f"upload {upload_id}: damaged session record")
        return UploadSession(upload_id, **value)

    def offset(self, session: UploadSession) -> int:
        """How many bytes of the session are staged."""
        try:
            return self._paths(session.upload_id)[0].stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"no upload {session.upload_id}") from None

    @contextmanager
    def _locked(self, session: UploadSession, mode: str) -> Iterator[BinaryIO]:
        part, _meta = self._paths(session.upload_id)
        # Never created here: a transfer racing a commit or an expiry must not leave a part file behind.
        flags = os.O_RDONLY if mode == "rb" else os.O_WRONLY | os.O_APPEND
        try:
            stream = os.fdopen(os.open(part, flags | os.O_CLOEXEC), mode)
        except FileNotFoundError:
            raise NotFoundError(f"no upload {session.upload_id}") from None
        with stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise NodeError(f"upload {session.upload_id} is busy: another transfer holds it") from None
            yield stream

    @contextmanager
    def appending(self, session: UploadSession, offset: int) -> Iterator[BinaryIO]:
        """The session's part, held for one transfer that continues it at ``offset`` (its staged size)."""
        with self._locked(session, "ab") as stream:
            staged = os.fstat(stream.fileno()).st_size
            if offset != staged:
                raise NodeError(f"upload {session.upload_id} holds {staged} bytes: continue at that offset")
            try:
                yield stream
            finally:
                stream.flush()
                os.fsync(stream.fileno())

    @contextmanager
    def complete(self, session: UploadSession) -> Iterator[Path]:
        """The path of the complete staged bytes, held (no transfer can start) while they are committed."""
        with self._locked(session, "rb") as stream:
            staged = os.fstat(stream.fileno()).st_size
            if staged != session.size:
                raise InvalidArgumentError(
                    f"upload {session.upload_id} is incomplete: {staged} of {session.size} bytes staged"
                )
            yield self._paths(session.upload_id)[0]

    def discard(self, session: UploadSession) -> None:
        for path in self._paths(session.upload_id):
            path.unlink(missing_ok=True)

    def check_owner(self, session: UploadSession, party_id: bytes, digest: bytes) -> None:
        """Only the party that opened a session commits it, for the bytes it opened it for."""
        if party_id != session.party_id:
            raise PermissionDeniedError(f"upload {session.upload_id} is another party's", rule="dataset.upload")
        if digest != session.digest:
            raise InvalidArgumentError(f"upload {session.upload_id} was opened for other bytes than the request's")

    # ----------------------------------------------------------------------- expiry

    def _sessions(self) -> Iterator[UploadSession]:
        for meta in self.folder.glob("*.meta"):
            try:
                yield self.session(meta.stem)
            except (NotFoundError, FormatError, TypeError):
                continue

    def _expire(self) -> int:
        removed = 0
        deadline = time.time() - self.ttl
        metas = {p.stem for p in self.folder.glob("*.meta")}
        for part in self.folder.glob("*.part"):
            try:
                if part.stem in metas and part.stat().st_mtime >= deadline:
                    continue
                with open(part, "rb") as stream:  # a transfer in progress keeps its session
                    fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    for path in (part, part.with_suffix(".meta")):
                        path.unlink(missing_ok=True)
                    removed += 1
            except (BlockingIOError, FileNotFoundError):  # in use, or committed meanwhile
                continue
        for stray in [*self.folder.glob("*.meta-new"), *(self.folder / f"{m}.meta" for m in metas)]:
            if not stray.with_suffix(".part").exists():
                stray.unlink(missing_ok=True)
        return removed

    def expire(self) -> int:
        """Remove idle sessions (and leftovers of interrupted ones); how many."""
        with self._folder_lock():
            return self._expire()
