"""Canonical msgpack (see "Canonical msgpack" in ``docs/formats.md``).

Every structure the task protocol hashes or signs is msgpack in one canonical
form, so that a value has exactly one encoding and the SHA-256 of its bytes is
its identity. :func:`encode` writes only that form; :func:`decode` refuses
every other one and says what it found and where.

Python types: ``None`` ↔ nil, ``bool`` ↔ bool, ``int`` ↔ int (-2**63 … 2**64-1),
``float`` ↔ float64, ``str`` ↔ str, ``bytes`` ↔ bin (``bytearray`` and
``memoryview`` encode as bin too), ``list``/``tuple`` → array (decoded as
``list``), ``dict`` (any mapping with ``str`` keys) ↔ map (decoded with its keys
in canonical order).

Depth: the top-level value is at depth 0 and the elements, keys and values of a
container at depth *d* are at depth *d* + 1; a value deeper than
:data:`MAX_DEPTH` is refused (the C++ decoder counts the same way).

Speed: both directions first try the ``msgpack`` C extension, which writes
exactly this form once maps are sorted (its integers, lengths and floats are
already the shortest, float64 and str8 forms). ``decode`` accepts the fast
result only if it re-encodes to the very same bytes, so the fast path can
never accept what the strict decoder would refuse; anything else (an error, a
type the fast path does not take) goes through the strict code below, which
decides and words the error.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import msgpack

from mesatee.errors import FormatError, InvalidArgumentError

__all__ = ["MAX_DEPTH", "MAX_ELEMENTS", "decode", "encode"]

MAX_DEPTH = 32
MAX_ELEMENTS = 1_000_000

_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1
_PREVIEW = 40

_pack_f64 = struct.Struct(">d").pack
_unpack_f64 = struct.Struct(">d").unpack_from


# --------------------------------------------------------------------------- encoding


def _head(parts: list[bytes | memoryview], n: int, fix: int, fix_max: int, t8: int | None, t16: int, t32: int) -> None:
    if n <= fix_max:
        parts.append(bytes((fix | n,)))
    elif t8 is not None and n <= 0xFF:
        parts.append(bytes((t8, n)))
    elif n <= 0xFFFF:
        parts.append(bytes((t16,)) + n.to_bytes(2, "big"))
    elif n <= 0xFFFFFFFF:
        parts.append(bytes((t32,)) + n.to_bytes(4, "big"))
    else:
        raise InvalidArgumentError(f"a length of {n} does not fit msgpack's 32-bit lengths")


def _int(parts: list[bytes | memoryview], x: int) -> None:
    if x >= 0:
        if x <= 0x7F:
            parts.append(bytes((x,)))
        elif x <= 0xFF:
            parts.append(bytes((0xCC, x)))
        elif x <= 0xFFFF:
            parts.append(b"\xcd" + x.to_bytes(2, "big"))
        elif x <= 0xFFFFFFFF:
            parts.append(b"\xce" + x.to_bytes(4, "big"))
        elif x <= _UINT_MAX:
            parts.append(b"\xcf" + x.to_bytes(8, "big"))
        else:
            raise InvalidArgumentError(f"integer {x} is above the msgpack range (at most 2**64-1)")
    elif x >= -32:
        parts.append(bytes((x & 0xFF,)))
    elif x >= -(2**7):
        parts.append(b"\xd0" + x.to_bytes(1, "big", signed=True))
    elif x >= -(2**15):
        parts.append(b"\xd1" + x.to_bytes(2, "big", signed=True))
    elif x >= -(2**31):
        parts.append(b"\xd2" + x.to_bytes(4, "big", signed=True))
    elif x >= _INT_MIN:
        parts.append(b"\xd3" + x.to_bytes(8, "big", signed=True))
    else:
        raise InvalidArgumentError(f"integer {x} is below the msgpack range (at least -2**63)")


def _str_bytes(s: str, where: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{where}: string is not encodable as UTF-8 (lone surrogate)") from None


def _encode(parts: list[bytes | memoryview], value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgumentError(f"{where}: nested deeper than {MAX_DEPTH}")
    if value is None:
        parts.append(b"\xc0")
    elif value is True:
        parts.append(b"\xc3")
    elif value is False:
        parts.append(b"\xc2")
    elif isinstance(value, int):
        _int(parts, int(value))
    elif isinstance(value, float):
        if math.isnan(value):
            raise InvalidArgumentError(f"{where}: NaN has no canonical encoding")
        parts.append(b"\xcb" + _pack_f64(value))
    elif isinstance(value, str):
        data = _str_bytes(value, where)
        _head(parts, len(data), 0xA0, 31, 0xD9, 0xDA, 0xDB)
        parts.append(data)
    elif isinstance(value, bytes | bytearray | memoryview):
        view = memoryview(value).cast("B") if isinstance(value, memoryview) else value
        n = len(view)
        if n <= 0xFF:
            parts.append(bytes((0xC4, n)))
        elif n <= 0xFFFF:
            parts.append(b"\xc5" + n.to_bytes(2, "big"))
        elif n <= 0xFFFFFFFF:
            parts.append(b"\xc6" + n.to_bytes(4, "big"))
        else:
            raise InvalidArgumentError(f"{where}: {n} bytes do not fit msgpack's 32-bit lengths")
        parts.append(view)
    elif isinstance(value, list | tuple):
        if len(value) > MAX_ELEMENTS:
            raise InvalidArgumentError(f"{where}: {len(value)} elements exceed the limit of {MAX_ELEMENTS}")
        _head(parts, len(value), 0x90, 15, None, 0xDC, 0xDD)
        for i, item in enumerate(value):
            _encode(parts, item, depth + 1, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        if len(value) > MAX_ELEMENTS:
            raise InvalidArgumentError(f"{where}: {len(value)} entries exceed the limit of {MAX_ELEMENTS}")
        entries = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{where}: map keys must be str, not {type(key).__name__}")
            entries.append((_str_bytes(key, where), key, item))
        entries.sort(key=lambda entry: entry[0])
        _head(parts, len(entries), 0x80, 15, None, 0xDE, 0xDF)
        for raw, key, item in entries:
            if depth + 1 > MAX_DEPTH:
                raise InvalidArgumentError(f"{where}: nested deeper than {MAX_DEPTH}")
            _head(parts, len(raw), 0xA0, 31, 0xD9, 0xDA, 0xDB)
            parts.append(raw)
            _encode(parts, item, depth + 1, f"{where}[{key[:_PREVIEW]!r}]")
    else:
        raise InvalidArgumentError(f"{where}: {type(value).__name__} has no canonical msgpack encoding")


class _NotFast(Exception):
    """The fast path does not take this value: the strict encoder decides."""


_first = itemgetter(0)


_PLAIN = frozenset({str, bytes, int, bool, type(None)})


def _fast(value: Any, depth: int) -> Any:
    """``value`` ready for msgpack (maps sorted), for the plain types only; ``_NotFast`` for anything else."""
    if depth > MAX_DEPTH:
        raise _NotFast
    kind = type(value)
    if kind in _PLAIN:
        return value
    # Below, a plain element is taken as it is (no call): the depth check above is all it would get.
    inner = depth + 1 <= MAX_DEPTH
    if kind is dict:
        if len(value) > MAX_ELEMENTS:
            raise _NotFast
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise _NotFast
            items.append((key, item if inner and type(item) in _PLAIN else _fast(item, depth + 1)))
        items.sort(key=_first)  # code point order is UTF-8 byte order
        return dict(items)
    if kind is list or kind is tuple:
        if len(value) > MAX_ELEMENTS:
            raise _NotFast
        return [item if inner and type(item) in _PLAIN else _fast(item, depth + 1) for item in value]
    if kind is float and not math.isnan(value):
        return value
    raise _NotFast


def encode(value: Any) -> bytes:
    """The canonical msgpack encoding of ``value``; ``InvalidArgumentError`` for anything outside the model."""
    try:
        return msgpack.packb(_fast(value, 0), use_bin_type=True)
    except (_NotFast, OverflowError, UnicodeEncodeError, ValueError, TypeError):
        pass
    parts: list[bytes | memoryview] = []
    _encode(parts, value, 0, "value")
    return b"".join(parts)


# --------------------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def fail(self, message: str, at: int | None = None) -> FormatError:
        return FormatError(f"canonical msgpack: {message} (at offset {self.pos if at is None else at})")

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"truncated reading {what} (need {n} bytes, {len(self.data) - self.pos} left)")
        view = self.data[self.pos : end]
        self.pos = end
        return view

    def be(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def length(self, n: int, shorter_max: int, at: int, what: str) -> int:
        x = self.be(n, f"{what} length")
        if x <= shorter_max:
            raise self.fail(f"{what} length {x} is not in its shortest form", at)
        return x

    def count(self, n: int, at: int, what: str, values_per_element: int) -> None:
        if n > MAX_ELEMENTS:
            raise self.fail(f"{what} of {n} elements exceeds the limit of {MAX_ELEMENTS}", at)
        if n * values_per_element > len(self.data) - self.pos:
            raise self.fail(f"{what} claims {n} elements, more than the bytes that remain", at)

    def text(self, n: int, at: int) -> str:
        raw = self.take(n, "string")
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not valid UTF-8", at) from None

    def value(self, depth: int) -> Any:
        at = self.pos
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH}", at)
        b = self.be(1, "type byte")
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b & 0xF0 == 0x80:
            return self.map(b & 0x0F, depth, at)
        if b & 0xF0 == 0x90:
            return self.array(b & 0x0F, depth, at)
        if b & 0xE0 == 0xA0:
            return self.text(b & 0x1F, at)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if 0xC4 <= b <= 0xC6:
            size = 1 << (b - 0xC4)
            n = self.be(size, "bin length") if size == 1 else self.length(size, (1 << (8 * size // 2)) - 1, at, "bin")
            return bytes(self.take(n, "bin"))
        if b == 0xCB:
            (x,) = _unpack_f64(self.take(8, "float64"))
            if math.isnan(x):
                raise self.fail("NaN is not allowed", at)
            return x
        if 0xCC <= b <= 0xCF:
            size = 1 << (b - 0xCC)
            x = self.be(size, "integer")
            if x < (0x80 if size == 1 else 1 << (8 * size // 2)):
                raise self.fail(f"integer {x} is not in its shortest form", at)
            return x
        if 0xD0 <= b <= 0xD3:
            size = 1 << (b - 0xD0)
            x = int.from_bytes(self.take(size, "integer"), "big", signed=True)
            if x >= (-32 if size == 1 else -(1 << (8 * size // 2 - 1))):
                raise self.fail(f"integer {x} is not in its shortest form", at)
            return x
        if 0xD9 <= b <= 0xDB:
            size = 1 << (b - 0xD9)
            n = self.length(size, 31 if size == 1 else (1 << (8 * size // 2)) - 1, at, "string")
            return self.text(n, at)
        if b in (0xDC, 0xDD):
            n = self.length(2 if b == 0xDC else 4, 15 if b == 0xDC else 0xFFFF, at, "array")
            return self.array(n, depth, at)
        if b in (0xDE, 0xDF):
            n = self.length(2 if b == 0xDE else 4, 15 if b == 0xDE else 0xFFFF, at, "map")
            return self.map(n, depth, at)
        kind = {0xC1: "the reserved type byte", 0xCA: "float32"}.get(b, "an ext type")
        raise self.fail(f"{kind} (0x{b:02x}) is not allowed", at)

    def array(self, n: int, depth: int, at: int) -> list[Any]:
        self.count(n, at, "array", 1)
        return [self.value(depth + 1) for _ in range(n)]

    def map(self, n: int, depth: int, at: int) -> dict[str, Any]:
        self.count(n, at, "map", 2)
        out: dict[str, Any] = {}
        previous: bytes | None = None
        for _ in range(n):
            key_at = self.pos
            key = self.value(depth + 1)
            if not isinstance(key, str):
                raise self.fail(f"map key of type {type(key).__name__}; keys must be strings", key_at)
            raw = key.encode("utf-8")
            if previous is not None and raw <= previous:
                problem = "repeated" if raw == previous else "out of order"
                raise self.fail(f"map key {key[:_PREVIEW]!r} is {problem}", key_at)
            previous = raw
            out[key] = self.value(depth + 1)
        return out


def decode(data: bytes | bytearray | memoryview, *, max_size: int) -> Any:
    """Decode one canonical value filling all of ``data`` (at most ``max_size`` bytes).

    Raises ``FormatError`` naming the defect and its offset for anything not in
    canonical form: non-shortest ints or lengths, float32, NaN, ext types,
    non-string, unsorted or repeated map keys, invalid UTF-8, nesting deeper
    than :data:`MAX_DEPTH`, containers above :data:`MAX_ELEMENTS`, trailing bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgumentError(f"data must be bytes, not {type(data).__name__}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise InvalidArgumentError("max_size must be a non-negative int")
    view = memoryview(data).cast("B")
    if len(view) > max_size:
        raise FormatError(f"canonical msgpack: {len(view)} bytes exceed the limit of {max_size}")
    try:
        value = msgpack.unpackb(view, raw=False, use_list=True, strict_map_key=True)
        if encode(value) == view:
            return value
    except Exception:  # whatever the fast path trips on, the strict decoder decides and explains
        pass
    decoder = _Decoder(view)
    value = decoder.value(0)
    if decoder.pos != len(view):
        raise decoder.fail(f"{len(view) - decoder.pos} trailing byte(s) after the value")
    return value
