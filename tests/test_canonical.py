"""Canonical msgpack: one encoding per value, every other encoding refused with a reason."""

from __future__ import annotations

import math
import struct

import msgpack
import pytest

from mesatee.core import canonical
from mesatee.core.canonical import MAX_DEPTH, decode, encode
from mesatee.errors import FormatError, InvalidArgumentError

BIG = 1 << 24


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


VALUES = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
    0.0,
    -0.0,
    1.5,
    -2.25e300,
    math.inf,
    -math.inf,
    "",
    "a",
    "x" * 31,
    "x" * 32,
    "x" * 255,
    "x" * 256,
    "x" * 65535,
    "x" * 65536,
    "é€😀",
    b"",
    b"\x00",
    b"b" * 255,
    b"b" * 256,
    b"b" * 65535,
    b"b" * 65536,
    [],
    [1] * 15,
    [1] * 16,
    [1] * 65535,
    [1] * 65536,
    {},
    {"a": 1},
    {str(i): i for i in range(15)},
    {str(i): i for i in range(16)},
    {f"k{i:06d}": None for i in range(65536)},
    {"": 0, "a": [1, {"b": None, "c": b"x"}], "ab": 2.5, "b": {"z": [[]]}},
    _nested(MAX_DEPTH, 0),
    _nested(MAX_DEPTH, []),
]


def _msgpack_reference(value: object) -> bytes:
    """msgpack-python with sorted keys: the canonical form for values it packs shortest."""

    def sort(v: object) -> object:
        if isinstance(v, dict):
            return {k: sort(v[k]) for k in sorted(v, key=lambda k: k.encode())}
        if isinstance(v, list):
            return [sort(x) for x in v]
        return v

    return msgpack.packb(sort(value), use_bin_type=True)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_round_trip_and_agreement_with_msgpack(value: object) -> None:
    data = encode(value)
    assert data == _msgpack_reference(value)
    decoded = decode(data, max_size=BIG)
    assert decoded == value or (isinstance(value, float) and math.copysign(1, decoded) == math.copysign(1, value))
    assert encode(decoded) == data


def test_types_on_the_way_in_and_out() -> None:
    assert encode((1, 2)) == encode([1, 2])
    assert encode(bytearray(b"ab")) == encode(b"ab") == encode(memoryview(b"ab"))
    assert decode(encode((1, [2])), max_size=100) == [1, [2]]
    assert type(decode(encode(bytearray(b"x")), max_size=100)) is bytes
    assert encode(1.0) == b"\xcb" + struct.pack(">d", 1.0)  # floats stay float64, even integral ones
    assert encode(True) == b"\xc3" and encode(1) == b"\x01"


def test_keys_sorted_by_utf8_bytes_shorter_first() -> None:
    value = {"b": 1, "ab": 2, "a": 3, "é": 4, "z": 5, "": 6}
    data = encode(value)
    keys = list(decode(data, max_size=100))
    assert keys == sorted(value, key=lambda k: k.encode())
    assert keys == ["", "a", "ab", "b", "z", "é"]


@pytest.mark.parametrize(
    "value, message",
    [
        (math.nan, "NaN"),
        ({1: 2}, "keys must be str"),
        ({b"a": 2}, "keys must be str"),
        ({"a": {"b": math.nan}}, r"value\['a'\]\['b'\]: NaN"),
        (object(), "object has no canonical"),
        ({1, 2}, "set has no canonical"),
        (2**64, "above"),
        (-(2**63) - 1, "below"),
        ("\ud800", "surrogate"),
        (_nested(MAX_DEPTH + 1, 0), "deeper"),
        ([_nested(MAX_DEPTH, {})], "deeper"),
        (_nested(MAX_DEPTH, {"a": 1}), "deeper"),
        (_nested(MAX_DEPTH, [1]), "deeper"),
    ],
)
def test_encode_refuses_what_has_no_canonical_form(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        encode(value)


def test_depth_limit_is_the_same_for_both_directions() -> None:
    # The top-level value is at depth 0; a scalar inside 32 arrays is at depth 32.
    assert decode(encode(_nested(MAX_DEPTH, 0)), max_size=100) == _nested(MAX_DEPTH, 0)
    assert decode(encode(_nested(MAX_DEPTH, {})), max_size=100) == _nested(MAX_DEPTH, {})
    with pytest.raises(FormatError, match="deeper"):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\x00", max_size=100)
    with pytest.raises(FormatError, match="deeper"):
        decode(b"\x91" * MAX_DEPTH + b"\x81\xa1a\x00", max_size=100)
    with pytest.raises(FormatError, match="deeper"):
        decode(b"\x91" * 2000 + b"\xc0", max_size=10000)


NON_CANONICAL = {
    # ints not in their shortest form
    "uint8 for a fixint": b"\xcc\x05",
    "uint16 for a uint8": b"\xcd\x00\xff",
    "uint32 for a uint16": b"\xce\x00\x00\xff\xff",
    "uint64 for a uint32": b"\xcf\x00\x00\x00\x00\xff\xff\xff\xff",
    "int8 for a positive": b"\xd0\x05",
    "int8 for a negative fixint": b"\xd0\xe0",
    "int16 for an int8": b"\xd1\xff\x80",
    "int16 for a positive": b"\xd1\x01\x00",
    "int32 for an int16": b"\xd2\xff\xff\x80\x00",
    "int64 for an int32": b"\xd3\xff\xff\xff\xff\x80\x00\x00\x00",
    "int64 for a large positive": b"\xd3\x7f\xff\xff\xff\xff\xff\xff\xff",
    # lengths not in their shortest form
    "str8 for a fixstr": b"\xd9\x01a",
    "str16 for a str8": b"\xda\x00\x01a",
    "str32 for a str16": b"\xdb\x00\x00\x00\x01a",
    "bin16 for a bin8": b"\xc5\x00\x01a",
    "bin32 for a bin8": b"\xc6\x00\x00\x00\x01a",
    "array16 for a fixarray": b"\xdc\x00\x01\x00",
    "array32 for an array16": b"\xdd\x00\x00\x00\x01\x00",
    "map16 for a fixmap": b"\xde\x00\x01\xa1a\x00",
    "map32 for a map16": b"\xdf\x00\x00\x00\x01\xa1a\x00",
    # maps
    "keys out of order": b"\x82\xa1b\x01\xa1a\x02",
    "longer key first": b"\x82\xa2ab\x01\xa1a\x02",
    "duplicate key": b"\x82\xa1a\x01\xa1a\x02",
    "int key": b"\x81\x01\x02",
    "bin key": b"\x81\xc4\x01a\x02",
    "nil key": b"\x81\xc0\x02",
    # types
    "float32": b"\xca\x3f\xc0\x00\x00",
    "NaN": b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
    "negative NaN": b"\xcb\xff\xf8\x00\x00\x00\x00\x00\x01",
    "fixext1": b"\xd4\x01\x00",
    "fixext16": b"\xd8\x01" + bytes(16),
    "ext8": b"\xc7\x01\x01\x00",
    "timestamp": b"\xd6\xff\x00\x00\x00\x00",
    "reserved 0xc1": b"\xc1",
    "invalid UTF-8": b"\xa2\xc3\x28",
    "UTF-8 surrogate": b"\xa3\xed\xa0\x80",
    "overlong UTF-8": b"\xa2\xc0\xaf",
    # framing
    "trailing bytes": b"\xc0\xc0",
    "trailing zero": b"\x01\x00",
    "empty": b"",
    "truncated str": b"\xa5abc",
    "truncated uint": b"\xcd\x01",
    "truncated array": b"\x93\x01\x02",
    "more elements than data": b"\xdd\xff\xff\xff\xff",
    "too many elements": b"\xdd\x00\x0f\x42\x41" + b"\x00" * 1_000_001,
    "too deep": b"\x91" * 40 + b"\xc0",
}


@pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_decode_refuses_every_non_canonical_form(data: bytes) -> None:
    with pytest.raises(FormatError, match="canonical msgpack: "):
        decode(data, max_size=1 << 21)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xcc\x05", r"integer 5 is not in its shortest form \(at offset 0\)"),
        (b"\x91\xd9\x01a", r"string length 1 is not in its shortest form \(at offset 1\)"),
        (b"\x82\xa1b\x01\xa1a\x02", r"map key 'a' is out of order \(at offset 4\)"),
        (b"\x82\xa1a\x01\xa1a\x02", "map key 'a' is repeated"),
        (b"\x81\x01\x02", "keys must be strings"),
        (b"\xca\x3f\xc0\x00\x00", "float32"),
        (b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "NaN"),
        (b"\xd4\x01\x00", "ext type"),
        (b"\xc0\xc0", r"1 trailing byte\(s\)"),
        (b"\xa5abc", "truncated"),
        (b"\xdd\x00\x0f\x42\x41", "exceeds the limit of 1000000"),
    ],
)
def test_decode_says_what_was_wrong_and_where(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode(data, max_size=1000)


def test_size_limit_is_the_callers() -> None:
    data = encode(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(FormatError, match="exceed the limit of 101"):
        decode(data, max_size=len(data) - 1)
    with pytest.raises(TypeError):
        decode(data)  # type: ignore[call-arg]  # max_size is required
    with pytest.raises(InvalidArgumentError):
        decode("text", max_size=10)  # type: ignore[arg-type]


def test_every_single_byte_change_of_a_document_is_refused_or_decodes_to_another_value() -> None:
    value = {"arguments": {"n": 300, "s": "text"}, "id": b"\x01" * 8, "list": [1, -40, 2.5, None, True]}
    data = encode(value)
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            changed = bytearray(data)
            changed[i] ^= flip
            try:
                other = decode(bytes(changed), max_size=1000)
            except FormatError:
                continue
            # Accepted only if it is the canonical encoding of a different value.
            assert encode(other) == bytes(changed) and other != value


def test_module_exports() -> None:
    assert canonical.MAX_DEPTH == 32 and canonical.MAX_ELEMENTS == 1_000_000


def test_the_fast_path_writes_and_reads_exactly_what_the_strict_code_does() -> None:
    """encode/decode try the msgpack extension first; on random values both paths give the same bytes and values,
    and every single-byte change of an encoding is accepted or refused alike."""
    import random

    from mesatee.core.canonical import _Decoder, _encode

    rng = random.Random(7)

    def value(depth: int = 0):
        kind = rng.randrange(9 if depth < 4 else 6)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.choice([0, 1, -1, 127, 128, -32, -33, 255, 256, 2**16, -(2**31), 2**63, 2**64 - 1, -(2**63)])
        if kind == 2:
            return rng.choice([0.0, -1.5, 1e300, float("inf")])
        if kind == 3:
            return "".join(rng.choice("aé€𝄞z") for _ in range(rng.choice([0, 3, 31, 32, 300])))
        if kind == 4:
            return rng.randbytes(rng.choice([0, 5, 255, 256, 70000]))
        if kind == 5:
            return rng.randrange(-(2**40), 2**40)
        if kind == 6:
            return [value(depth + 1) for _ in range(rng.choice([0, 2, 15, 16]))]
        return {"".join(rng.choice("abé") for _ in range(rng.randrange(4))): value(depth + 1) for _ in range(5)}

    for _ in range(300):
        v = value()
        parts: list = []
        _encode(parts, v, 0, "value")
        strict = b"".join(parts)
        assert canonical.encode(v) == strict
        assert canonical.decode(strict, max_size=1 << 20) == _Decoder(memoryview(strict)).value(0)
        if len(strict) < 400:
            for i in range(len(strict)):
                mutated = bytearray(strict)
                mutated[i] ^= 1 << rng.randrange(8)
                try:
                    fast = ("ok", canonical.decode(bytes(mutated), max_size=1 << 20))
                except FormatError as exc:
                    fast = ("refused", str(exc))
                decoder = _Decoder(memoryview(bytes(mutated)))
                try:
                    slow_value = decoder.value(0)
                    if decoder.pos != len(mutated):
                        raise decoder.fail(f"{len(mutated) - decoder.pos} trailing byte(s) after the value")
                    slow = ("ok", slow_value)
                except FormatError as exc:
                    slow = ("refused", str(exc))
                assert fast == slow
