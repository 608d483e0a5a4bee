"""MTEF encrypted files: round trips, every structural and cryptographic attack refused, constant memory."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import REPO
from mesatee.core import files
from mesatee.errors import CryptoError, FormatError, InvalidArgumentError, MesateeError

C = 4096  # the smallest chunk size keeps the tests fast
SEALED = C + files.TAG_SIZE
H = files.HEADER_SIZE
KEY = bytes(range(32))


def _enc(data: bytes, key: bytes = KEY, **kwargs) -> bytes:
    return files.encrypt_bytes(data, key, chunk_size=C, **kwargs)


def _chunks(file: bytes) -> list[bytes]:
    body = file[H:]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


class Trickle(io.RawIOBase):
    """A source that returns at most 1000 bytes per read, as a pipe may."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 1000) if n >= 0 else 1000)


# --------------------------------------------------------------------------- round trips and layout


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 5])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    file = _enc(data)
    chunks = max(1, -(-size // C))
    assert len(file) == H + size + chunks * files.TAG_SIZE
    assert files.decrypt_bytes(file, KEY) == data
    out = io.BytesIO()
    assert files.decrypt_stream(Trickle(file), out, KEY) == size
    assert out.getvalue() == data
    streamed = io.BytesIO()
    dataset_id = files.encrypt_stream(Trickle(data), streamed, KEY, chunk_size=C)
    assert dataset_id == hashlib.sha256(streamed.getvalue()).digest()
    assert files.decrypt_bytes(streamed.getvalue(), KEY) == data


def test_header_layout_and_nonces_follow_the_spec() -> None:
    prefix = bytes.fromhex("01020304050607")
    data = os.urandom(2 * C + 10)
    file = _enc(data, nonce_prefix=prefix)
    header = file[:H]
    assert header == b"MTEF" + bytes([1, 1, 0, 12]) + prefix + b"\0"
    assert files.FileHeader.from_bytes(header) == files.FileHeader(C, prefix)
    aead = AESGCM(KEY)
    for i, chunk in enumerate(_chunks(file)):
        nonce = prefix + i.to_bytes(4, "big") + bytes([i == 2])
        assert aead.decrypt(nonce, chunk, header) == data[i * C : (i + 1) * C]
    assert _enc(b"", nonce_prefix=prefix)[H:] == aead.encrypt(prefix + bytes(4) + b"\x01", b"", header)


def test_default_chunk_size_and_fresh_nonce_prefixes() -> None:
    file = files.encrypt_bytes(b"x", KEY)
    assert files.FileHeader.from_bytes(file[:H]).chunk_size == files.DEFAULT_CHUNK_SIZE == 1 << 16
    assert _enc(b"x")[8:15] != _enc(b"x")[8:15]


def test_an_empty_final_chunk_after_full_ones_is_accepted() -> None:
    # Our writer makes a full last chunk final; the spec lets the last chunk hold 0 bytes too.
    prefix = bytes(7)
    header = files.FileHeader(C, prefix).to_bytes()
    aead = AESGCM(KEY)
    data = os.urandom(C)
    file = header + aead.encrypt(prefix + bytes(4) + b"\0", data, header)
    file += aead.encrypt(prefix + (1).to_bytes(4, "big") + b"\x01", b"", header)
    assert files.decrypt_bytes(file, KEY) == data


def test_vector_file() -> None:
    raw = json.loads((REPO / "tests" / "vectors" / "encrypted_file.json").read_text())
    v = {k: bytes.fromhex(x) if isinstance(x, str) and k != "description" else x for k, x in raw.items()}
    assert v["plaintext"] == bytes(i % 251 for i in range(10000))
    made = files.encrypt_bytes(v["plaintext"], v["key"], chunk_size=v["chunk_size"], nonce_prefix=v["nonce_prefix"])
    assert made == v["file"]
    assert hashlib.sha256(made).digest() == v["dataset_id"]
    out = io.BytesIO()
    assert (
        files.encrypt_stream(
            io.BytesIO(v["plaintext"]), out, v["key"], chunk_size=v["chunk_size"], nonce_prefix=v["nonce_prefix"]
        )
        == v["dataset_id"]
    )
    assert files.decrypt_bytes(v["file"], v["key"]) == v["plaintext"]


# --------------------------------------------------------------------------- attacks


DATA = bytes(i % 253 for i in range(3 * C + 100))  # 3 full chunks and a partial final one


@pytest.fixture(scope="module")
def good() -> bytes:
    return _enc(DATA)


def test_truncation_at_every_chunk_boundary_is_a_format_error(good: bytes) -> None:
    with pytest.raises(FormatError, match="no chunk after the header"):
        files.decrypt_bytes(good[:H], KEY)
    for k in (1, 2, 3):
        with pytest.raises(FormatError, match=f"ends after chunk {k - 1}, which is not the final chunk"):
            files.decrypt_bytes(good[: H + k * SEALED], KEY)


def test_truncation_anywhere_is_refused(good: bytes) -> None:
    for cut in range(0, H):
        with pytest.raises(FormatError, match="header"):
            files.decrypt_bytes(good[:cut], KEY)
    for cut in [*range(H, len(good), 97), len(good) - 1]:
        with pytest.raises((FormatError, CryptoError)):
            files.decrypt_bytes(good[:cut], KEY)
    # a final piece shorter than a tag is structurally truncated
    with pytest.raises(FormatError, match="chunk 1 is cut short"):
        files.decrypt_bytes(good[: H + SEALED + 15], KEY)
    # mid-chunk cuts cannot be told from tampering: the piece fails as a final chunk
    with pytest.raises(CryptoError, match="chunk 1 failed authentication"):
        files.decrypt_bytes(good[: H + SEALED + 100], KEY)


def test_reordered_chunks_are_refused(good: bytes) -> None:
    c = _chunks(good)
    with pytest.raises(CryptoError, match="chunk 0 failed authentication"):
        files.decrypt_bytes(good[:H] + c[1] + c[0] + c[2] + c[3], KEY)
    with pytest.raises(CryptoError, match="chunk 2 failed authentication"):
        files.decrypt_bytes(good[:H] + c[0] + c[1] + c[3] + c[2], KEY)


def test_duplicated_or_dropped_chunks_are_refused(good: bytes) -> None:
    c = _chunks(good)
    with pytest.raises(CryptoError, match="chunk 1 failed authentication"):
        files.decrypt_bytes(good[:H] + c[0] + c[0] + c[1] + c[2] + c[3], KEY)
    with pytest.raises(CryptoError, match="chunk 1 failed authentication"):
        files.decrypt_bytes(good[:H] + c[0] + c[2] + c[3], KEY)
    with pytest.raises(CryptoError, match="chunk 3 failed authentication"):
        files.decrypt_bytes(good[:H] + c[0] + c[1] + c[2] + c[3] + c[3], KEY)


def test_splicing_files_is_refused(good: bytes) -> None:
    same_key = _enc(os.urandom(len(DATA)))
    other_key = _enc(os.urandom(len(DATA)), os.urandom(32))
    for other in (same_key, other_key):
        a, b = _chunks(good), _chunks(other)
        with pytest.raises(CryptoError, match="chunk 1 failed authentication"):
            files.decrypt_bytes(good[:H] + a[0] + b[1] + b[2] + b[3], KEY)
        with pytest.raises(CryptoError, match="chunk 0 failed authentication"):
            files.decrypt_bytes(other[:H] + a[0] + a[1] + a[2] + a[3], KEY)  # another header (nonce prefix)
        with pytest.raises(CryptoError, match="chunk 3 failed authentication"):
            files.decrypt_bytes(good[:H] + a[0] + a[1] + a[2] + b[3], KEY)


def test_a_flipped_byte_anywhere_is_refused() -> None:
    data = os.urandom(C + 300)  # two chunks: 16 + 4112 + 316 bytes
    file = _enc(data)
    for i in range(len(file)):
        changed = bytearray(file)
        changed[i] ^= 0x01
        if i < H:
            with pytest.raises((FormatError, CryptoError)):
                files.decrypt_bytes(bytes(changed), KEY)
        else:
            index = (i - H) // SEALED
            with pytest.raises(CryptoError, match=f"chunk {index} failed authentication"):
                files.decrypt_bytes(bytes(changed), KEY)


def test_wrong_key_is_refused(good: bytes) -> None:
    with pytest.raises(
        CryptoError, match=r"chunk 0 failed authentication \(tampered, reordered, spliced or wrong key\)"
    ):
        files.decrypt_bytes(good, os.urandom(32))


def test_trailing_data_is_refused(good: bytes) -> None:
    full = _enc(os.urandom(2 * C))  # its final chunk is full
    for extra in (b"\0", b"x" * 16, b"x" * 5000, _chunks(full)[0]):
        with pytest.raises(FormatError, match="trailing data after the final chunk 1"):
            files.decrypt_bytes(full + extra, KEY)
    # after a short final chunk the extra bytes join it, and it no longer authenticates
    for extra in (b"\0", b"x" * 100, _chunks(good)[0]):
        with pytest.raises(CryptoError, match="chunk 3 failed authentication"):
            files.decrypt_bytes(good + extra, KEY)


@pytest.mark.parametrize(
    "offset, value, message",
    [
        (0, ord("X"), "bad magic"),
        (4, 2, "unsupported version 2"),
        (4, 0, "unsupported version 0"),
        (5, 2, "unknown algorithm 2"),
        (6, 1, "bad reserved byte at offset 6"),
        (7, 11, "chunk size 2\\*\\*11"),
        (7, 25, "chunk size 2\\*\\*25"),
        (7, 30, "chunk size"),
        (15, 1, "bad reserved byte at offset 15"),
    ],
)
def test_bad_header_fields_are_format_errors(good: bytes, offset: int, value: int, message: str) -> None:
    changed = good[:offset] + bytes([value]) + good[offset + 1 :]
    with pytest.raises(FormatError, match=message):
        files.decrypt_bytes(changed, KEY)


def test_another_valid_chunk_size_in_the_header_fails_authentication(good: bytes) -> None:
    changed = good[:7] + bytes([13]) + good[8:]
    with pytest.raises(CryptoError, match="chunk 0 failed authentication"):
        files.decrypt_bytes(changed, KEY)


def test_too_many_chunks(monkeypatch: pytest.MonkeyPatch, good: bytes) -> None:
    monkeypatch.setattr(files, "MAX_CHUNKS", 3)
    with pytest.raises(FormatError, match="more than 3 chunks"):
        files.decrypt_bytes(good, KEY)  # 4 chunks
    with pytest.raises(InvalidArgumentError, match="more than 3 chunks"):
        _enc(DATA)
    assert files.decrypt_bytes(_enc(DATA[: 3 * C]), KEY) == DATA[: 3 * C]


@pytest.mark.parametrize("chunk_size", [0, 1, 2048, 4095, 5000, 1 << 25, -4096, True, 4096.0])
def test_bad_chunk_sizes(chunk_size: object) -> None:
    with pytest.raises(InvalidArgumentError, match="chunk_size"):
        files.encrypt_bytes(b"x", KEY, chunk_size=chunk_size)  # type: ignore[arg-type]


def test_bad_keys_and_nonce_prefixes() -> None:
    for key in (bytes(16), bytes(31), bytes(33)):
        with pytest.raises(InvalidArgumentError, match="32 bytes"):
            files.encrypt_bytes(b"x", key)
        with pytest.raises(InvalidArgumentError, match="32 bytes"):
            files.decrypt_bytes(_enc(b"x"), key)
    with pytest.raises(InvalidArgumentError, match="nonce_prefix"):
        files.encrypt_bytes(b"x", KEY, nonce_prefix=bytes(8))


# --------------------------------------------------------------------------- files on disk


def test_encrypt_file_and_decrypt_file(tmp_path: Path) -> None:
    data = os.urandom(3 * C + 7)
    src, dst, out = tmp_path / "plain.csv", tmp_path / "plain.csv.mtef", tmp_path / "again.csv"
    src.write_bytes(data)
    encrypted = files.encrypt_file(src, dst, chunk_size=C)
    assert encrypted.size == len(data)
    assert encrypted.dataset_id == hashlib.sha256(dst.read_bytes()).digest()
    assert len(encrypted.key) == 32 and encrypted.key.hex() not in repr(encrypted)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    assert files.decrypt_file(dst, out, encrypted.key) == len(data)
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.csv", "plain.csv", "plain.csv.mtef"]
    assert files.encrypt_file(src, dst, chunk_size=C).key != encrypted.key  # a fresh key per file


def test_decrypt_file_leaves_no_output_on_failure(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "in.mtef"
    src.write_bytes(os.urandom(3 * C + 7))
    encrypted = files.encrypt_file(src, dst, chunk_size=C)
    file = dst.read_bytes()
    dst.write_bytes(file[:-1] + bytes([file[-1] ^ 1]))  # the last chunk fails, after three were written
    out = tmp_path / "out"
    with pytest.raises(CryptoError, match="chunk 3"):
        files.decrypt_file(dst, out, encrypted.key)
    assert not out.exists()
    dst.write_bytes(file[: H + SEALED])
    with pytest.raises(FormatError, match="truncated"):
        files.decrypt_file(dst, out, encrypted.key)
    assert not out.exists()
    out.write_bytes(b"previous content")
    with pytest.raises(CryptoError):
        files.decrypt_file(dst.with_name("in.mtef"), out, os.urandom(32))
    assert out.read_bytes() == b"previous content"  # an existing file is replaced only on success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "in.mtef", "out"]  # no temporary left


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    files.atomic_write_bytes(target, b"one")
    files.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


# --------------------------------------------------------------------------- Teaclave


def test_teaclave_vector() -> None:
    # /work/shared/fixtures/teaclave/CASES.md: key 16 zero bytes, IV 12 zero bytes, plaintext "password".
    file = base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9")
    assert file[-16:].hex() == "e84748f7ad380e183062b9b4b3942b7d"
    assert files.teaclave_decrypt(file, bytes(16), bytes(12)) == b"password"
    assert files.teaclave_encrypt(b"password", bytes(16), bytes(12)) == file


@pytest.mark.parametrize("key_size", [16, 32])
def test_teaclave_round_trip_and_refusals(key_size: int) -> None:
    key, iv = os.urandom(key_size), os.urandom(12)
    file = files.teaclave_encrypt(b"some data", key, iv)
    assert len(file) == 9 + 16
    assert files.teaclave_decrypt(file, key, iv) == b"some data"
    with pytest.raises(CryptoError):
        files.teaclave_decrypt(file[:-1] + bytes([file[-1] ^ 1]), key, iv)
    with pytest.raises(CryptoError):
        files.teaclave_decrypt(file, key, os.urandom(12))
    with pytest.raises(FormatError, match="shorter than its 16-byte tag"):
        files.teaclave_decrypt(file[:15], key, iv)
    # the AAD is 8 zero bytes, not empty
    assert AESGCM(key).decrypt(iv, file, bytes(8)) == b"some data"


def test_teaclave_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="16 or 32"):
        files.teaclave_encrypt(b"x", bytes(24), bytes(12))
    with pytest.raises(InvalidArgumentError, match="IV"):
        files.teaclave_decrypt(b"x" * 20, bytes(16), bytes(16))
    assert dict(files.FORMATS) == {"mesatee-v1": 32, "teaclave-aes-gcm-128": 16, "teaclave-aes-gcm-256": 32}


# --------------------------------------------------------------------------- constant memory


MEMORY_SCRIPT = textwrap.dedent(
    """
    import hashlib, os, resource, sys
    from mesatee.core import files

    TOTAL = 256 << 20
    PATTERN = bytes(range(256)) * 4096 * 2  # 2 MiB, so any read of up to 1 MiB is one slice

    class Pattern:
        def __init__(self, total):
            self.left, self.pos, self.digest = total, 0, hashlib.sha256()
        def read(self, n=-1):
            n = self.left if n < 0 else min(n, self.left)
            n = min(n, 1 << 20)
            start = self.pos % (1 << 20)
            out = PATTERN[start : start + n]
            self.pos += n
            self.left -= n
            self.digest.update(out)
            return out

    class Sink:
        def __init__(self):
            self.digest, self.size = hashlib.sha256(), 0
        def write(self, data):
            self.digest.update(data)
            self.size += len(data)
            return len(data)

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    path, key = sys.argv[1], os.urandom(32)
    with open(path, "wb") as warm:  # warm up: imports, buffers, OpenSSL
        files.encrypt_stream(Pattern(1 << 20), warm, key)
    base = peak_mib()
    source = Pattern(TOTAL)
    with open(path, "wb") as dst:
        dataset_id = files.encrypt_stream(source, dst, key)
    sink = Sink()
    with open(path, "rb") as src:
        assert files.decrypt_stream(src, sink, key) == TOTAL
    assert sink.digest.digest() == source.digest.digest()
    with open(path, "rb") as f:
        digest = hashlib.sha256()
        while block := f.read(1 << 20):
            digest.update(block)
    assert digest.digest() == dataset_id
    print(peak_mib() - base)
    """
)


@pytest.mark.slow
def test_256_mib_stream_in_constant_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "big.mtef")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    growth_mib = float(done.stdout.strip())
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.1f} MiB while streaming 256 MiB"


def test_errors_are_mesatee_errors() -> None:
    with pytest.raises(MesateeError):
        files.decrypt_bytes(b"MTEF", KEY)
