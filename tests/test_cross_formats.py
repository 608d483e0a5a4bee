"""Byte compatibility between the Python and the C++ (trusted) implementations of the formats."""

from __future__ import annotations

import os

import pytest

from mesatee import CryptoError, FormatError
from mesatee.core import canonical, files
from test_canonical import VALUES  # every kind of value, at each encoding boundary


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_files_python_to_cpp_and_back(probe, size: int) -> None:
    key, data = os.urandom(32), os.urandom(size)
    made_in_python = files.encrypt_bytes(data, key, chunk_size=4096)
    assert probe("file_decrypt", key=key, file=made_in_python) == data
    made_in_cpp = probe("file_encrypt", key=key, plaintext=data, chunk_log2=12)
    assert files.decrypt_bytes(made_in_cpp, key) == data
    assert len(made_in_cpp) == len(made_in_python)


def test_file_vector_opens_in_cpp(probe) -> None:
    import json

    from conftest import REPO

    v = {
        k: bytes.fromhex(x) if isinstance(x, str) else x
        for k, x in json.loads((REPO / "tests" / "vectors" / "encrypted_file.json").read_text()).items()
        if k != "description"
    }
    assert probe("file_decrypt", key=v["key"], file=v["file"]) == v["plaintext"]


def test_cpp_refuses_what_python_refuses(probe) -> None:
    key = os.urandom(32)
    good = files.encrypt_bytes(os.urandom(10000), key, chunk_size=4096)
    chunk = 4096 + 16
    first, second, rest = good[16 : 16 + chunk], good[16 + chunk : 16 + 2 * chunk], good[16 + 2 * chunk :]
    other = files.encrypt_bytes(os.urandom(10000), key, chunk_size=4096)
    broken = {
        "truncated after a chunk": good[: 16 + chunk],
        "truncated mid chunk": good[:-5],
        "chunks swapped": good[:16] + second + first + rest,
        "chunk duplicated": good[:16] + first + first + second + rest,
        "flipped byte": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "spliced with another file": good[: 16 + chunk] + other[16 + chunk :],
        "trailing data": good + b"x",
    }
    for name, data in broken.items():
        with pytest.raises((CryptoError, FormatError)):
            probe("file_decrypt", key=key, file=data)
        with pytest.raises((CryptoError, FormatError)):
            files.decrypt_bytes(data, key)
        assert name
    with pytest.raises(CryptoError):
        probe("file_decrypt", key=os.urandom(32), file=good)
    with pytest.raises(FormatError, match="chunk size"):
        probe("file_decrypt", key=key, file=good[:7] + bytes([30]) + good[8:])


def test_teaclave_vector_in_cpp(probe) -> None:
    import base64

    file = base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9")
    assert probe("teaclave_decrypt", key=bytes(16), iv=bytes(12), file=file) == b"password"
    with pytest.raises(CryptoError):
        probe("teaclave_decrypt", key=bytes(16), iv=bytes([1]) + bytes(11), file=file)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_canonical_msgpack_is_one_encoding_on_both_sides(probe, value: object) -> None:
    encoded = canonical.encode(value)
    assert probe("msgpack_reencode", data=encoded) == encoded


@pytest.mark.parametrize(
    "data",
    [
        b"\xcc\x05",  # 5 as uint8
        b"\xd0\x05",  # 5 as int8
        b"\xd1\xff\x80",  # -128 as int16
        b"\xd9\x01a",  # a 1-byte str8
        b"\x82\xa1b\x01\xa1a\x02",  # keys out of order
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate key
        b"\x81\x01\x02",  # non-string key
        b"\xca\x00\x00\x00\x00",  # float32
        b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\xd4\x01\x00",  # ext
        b"\xc0\xc0",  # trailing bytes
        b"\xa2\xc3\x28",  # invalid UTF-8
        b"\x91" * 40 + b"\xc0",  # too deep
        b"\xdd\xff\xff\xff\xff",  # more elements than data
    ],
)
def test_non_canonical_refused_on_both_sides(probe, data: bytes) -> None:
    with pytest.raises(FormatError):
        probe("msgpack_reencode", data=data)
    with pytest.raises(FormatError):
        canonical.decode(data, max_size=1 << 20)


def _manifest(parties: int = 2):
    from mesatee.core.manifest import EnclaveRequirement, FunctionRef, InputSlot, Manifest
    from mesatee.parties import Party

    people = [Party.generate() for _ in range(parties)]
    return Manifest.create(
        creator=people[0].identity,
        function=FunctionRef("ordered_set_intersect", 1),
        enclaves=[
            EnclaveRequirement(mrenclave=os.urandom(32)),
            EnclaveRequirement(mrsigner=os.urandom(32), product_id=3),
        ],
        parties=[p.identity for p in people],
        inputs={f"input_data{i + 1}": InputSlot(p.party_id, os.urandom(32)) for i, p in enumerate(people)},
        outputs={"output_result1": [p.identity for p in people]},
        arguments={"order": "ascending", "weights": [1.5, -2, None, True], "blob": b"\x00\xff"},
    )


@pytest.mark.parametrize("parties", [1, 2, 5])
def test_a_manifest_built_in_python_hashes_the_same_in_cpp(probe, parties: int) -> None:
    manifest = _manifest(parties)
    encoded = manifest.to_bytes()
    assert probe("manifest_hash", data=encoded) == manifest.hash
    assert probe("msgpack_reencode", data=encoded) == encoded


def test_manifest_rules_agree(probe) -> None:
    """What the Python parser refuses, the enclave's parser refuses too (and the reverse)."""
    from mesatee import TaskRefusedError
    from mesatee.core.manifest import Manifest

    value = canonical.decode(_manifest(2).to_bytes(), max_size=1 << 20)
    first_participant = next(iter(value["participants"]))
    broken = {
        "unknown field": {**value, "extra": 1},
        "missing field": {k: v for k, v in value.items() if k != "expires_at"},
        "short task id": {**value, "task_id": b"x"},
        "participant id not its key's hash": {
            **value,
            "participants": {**value["participants"], "00" * 32: value["participants"][first_participant]},
        },
        "participant without a role": {
            **value,
            "participants": {k: v for k, v in value["participants"].items() if k != first_participant},
        },
        "bad slot name": {**value, "outputs": {"bad slot!": value["outputs"]["output_result1"]}},
        "unknown input format": {
            **value,
            "inputs": {k: {**v, "format": "rot13"} for k, v in value["inputs"].items()},
        },
        "no enclaves": {**value, "enclaves": []},
        "version 2": {**value, "version": 2},
    }
    for name, bad in broken.items():
        data = canonical.encode(bad)
        with pytest.raises(FormatError):
            Manifest.from_bytes(data)
        with pytest.raises(TaskRefusedError) as info:
            probe("manifest_hash", data=data)
        assert info.value.status == 70, name
