"""The node's content-addressed blob store: atomic writes, digests verified on every read."""

from __future__ import annotations

import errno
import hashlib
import io
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from mesatee.errors import InvalidArgumentError, NotFoundError, StorageError
from mesatee.node.blobs import CHUNK_SIZE, BlobStore, check_blob_id


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_returns_the_sha256_and_fans_out(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    blob_id = store.put(b"ciphertext")
    assert blob_id == _sha(b"ciphertext")
    path = tmp_path / "blobs" / blob_id[:2] / blob_id[2:4] / blob_id
    assert path.read_bytes() == b"ciphertext"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.exists(blob_id) and store.size(blob_id) == 10
    assert store.get(blob_id) == b"ciphertext"
    assert list(store) == [blob_id]


def test_put_is_idempotent_and_leaves_no_temporaries(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.put(b"x") == store.put(bytearray(b"x")) == store.put(io.BytesIO(b"x"))
    assert list(store) == [_sha(b"x")]
    assert not list(tmp_path.glob(".tmp-*"))


def test_put_streams_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 17)
    reads = []

    class Stream(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            chunk = super().read(n)
            reads.append(len(chunk))
            return chunk

    store = BlobStore(tmp_path)
    blob_id = store.put(Stream(data))
    assert blob_id == _sha(data)
    assert max(reads) <= CHUNK_SIZE and len(reads) >= 4
    with store.open(blob_id) as f:
        assert f.read() == data


def test_adopt_links_the_file_into_place_without_copying_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    source = tmp_path / "staged"
    data = os.urandom(CHUNK_SIZE + 5)
    source.write_bytes(data)
    source.chmod(0o644)
    blob_id = store.adopt(source)
    path = store.path(blob_id)
    assert blob_id == _sha(data) and store.get(blob_id) == data
    assert path.stat().st_ino == source.stat().st_ino and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.adopt(source) == blob_id and not list((tmp_path / "blobs").glob(".tmp-*"))
    source.unlink()
    assert store.get(blob_id) == data and list(store) == [blob_id]


def test_adopt_copies_a_file_it_cannot_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    store = BlobStore(tmp_path / "blobs")
    source = tmp_path / "staged"
    source.write_bytes(b"elsewhere")
    blob_id = store.adopt(source)
    assert store.get(blob_id) == b"elsewhere" and store.path(blob_id).stat().st_ino != source.stat().st_ino
    with pytest.raises(FileNotFoundError):
        store.adopt(tmp_path / "missing")
    assert not list((tmp_path / "blobs").glob(".tmp-*"))


def test_empty_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob_id = store.put(b"")
    assert store.get(blob_id) == b"" and store.size(blob_id) == 0


def test_oversized_stream_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidArgumentError, match="limit of 10 bytes"):
        store.put(io.BytesIO(b"y" * 11), max_size=10)
    assert list(store) == [] and not list(tmp_path.glob(".tmp-*"))
    assert store.put(b"y" * 10, max_size=10) == _sha(b"y" * 10)


def test_a_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise OSError("disk on fire")

    store = BlobStore(tmp_path)
    with pytest.raises(OSError, match="disk on fire"):
        store.put(Broken())  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("*.*")) and list(store) == []


@pytest.mark.parametrize("how", ["flip", "truncate", "extend", "replace"])
def test_a_corrupted_blob_is_reported_and_never_served(tmp_path: Path, how: str) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(2 * CHUNK_SIZE + 5)
    blob_id = store.put(data)
    path = store.path(blob_id)
    damaged = {
        "flip": data[:100] + bytes([data[100] ^ 1]) + data[101:],
        "truncate": data[:-1],
        "extend": data + b"\x00",
        "replace": b"other",
    }[how]
    path.write_bytes(damaged)
    with pytest.raises(StorageError, match=blob_id) as exc:
        store.get(blob_id)
    assert exc.value.status == 95
    with pytest.raises(StorageError, match=blob_id):
        store.open(blob_id)
    with pytest.raises(StorageError, match=blob_id):
        store.verify(blob_id)
    # A put of the right bytes repairs it.
    assert store.put(data) == blob_id
    assert store.get(blob_id) == data


def test_a_blob_damaged_while_it_streams_fails_at_the_end(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(3 * CHUNK_SIZE)
    blob_id = store.put(data)
    with store.open(blob_id) as f:
        first = f.read(CHUNK_SIZE)
        with open(store.path(blob_id), "r+b") as raw:
            raw.seek(2 * CHUNK_SIZE)
            raw.write(b"\xff" * 8)
        with pytest.raises(StorageError, match=blob_id):
            while f.read(CHUNK_SIZE):
                pass
    assert first == data[:CHUNK_SIZE]


def test_missing_and_deleted_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob_id = store.put(b"gone soon")
    assert store.delete(blob_id) is True
    assert store.delete(blob_id) is False
    assert not store.exists(blob_id)
    for call in (store.get, store.open, store.size, store.verify):
        with pytest.raises(NotFoundError, match=blob_id):
            call(blob_id)


@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, 5, b"a" * 64])
def test_blob_ids_are_checked_before_any_path_is_built(tmp_path: Path, bad: object) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidArgumentError):
        check_blob_id(bad)
    for call in (store.get, store.exists, store.delete, store.path):
        with pytest.raises(InvalidArgumentError):
            call(bad)  # type: ignore[arg-type]


def test_put_refuses_other_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        BlobStore(tmp_path).put("text")  # type: ignore[arg-type]


def test_remove_temporaries(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    (tmp_path / ".tmp-leftover").write_bytes(b"partial")
    assert store.remove_temporaries() == 1
    assert not (tmp_path / ".tmp-leftover").exists()


def _writer(folder: str, seed: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = BlobStore(folder)
    ids = [store.put(b"shared-%d" % i) for i in range(20)]
    ids += [store.put(b"own-%d-%d" % (seed, i)) for i in range(20)]
    queue.put(ids)


def test_two_processes_write_the_same_blobs_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), seed, queue)) for seed in (1, 2)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    store = BlobStore(tmp_path)
    assert len(set(results[0]) | set(results[1])) == 60
    assert sorted(store) == sorted(set(results[0]) | set(results[1]))
    for blob_id in store:
        store.verify(blob_id)
    assert not list(tmp_path.glob(".tmp-*"))
