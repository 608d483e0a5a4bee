"""A strict little-endian reader for the binary formats of ``docs/formats.md``.

Every read is checked against the bytes that remain, and every error names the
structure being read, the field and the offset, so a refusal can be traced to
the byte that caused it.
"""

from __future__ import annotations

from typing import NoReturn

from mesatee.errors import FormatError, InvalidArgumentError, MesateeError, Status

__all__ = ["Reader"]


class Reader:
    """Reads fields in order from a buffer; raises ``error(message, status)`` on any defect."""

    __slots__ = ("_base", "_data", "_error", "_offset", "_status", "what")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        what: str,
        error: type[MesateeError] = FormatError,
        status: Status | None = None,
        *,
        base: int = 0,
    ) -> None:
        """``base``: where ``data`` starts in the enclosing buffer, so offsets in errors are absolute."""
        self._data = memoryview(data).cast("B")
        self._base = base
        self._offset = 0
        self._error = error
        self._status = status
        self.what = what

    @property
    def offset(self) -> int:
        """The position of the next read, counted from the start of the enclosing buffer."""
        return self._base + self._offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def fail(self, message: str) -> NoReturn:
        """Raise this reader's error with ``message`` prefixed by what is being read."""
        raise self._error(f"{self.what}: {message}", self._status)

    def take(self, n: int, field: str = "bytes") -> bytes:
        if n < 0:
            raise ValueError("negative length")
        if n > self.remaining:
            self.fail(f"truncated at offset {self.offset} reading {field} (need {n} bytes, {self.remaining} left)")
        start = self._offset
        self._offset += n
        return bytes(self._data[start : self._offset])

    def _uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little")

    def u8(self, field: str = "u8") -> int:
        return self._uint(1, field)

    def u16(self, field: str = "u16") -> int:
        return self._uint(2, field)

    def u32(self, field: str = "u32") -> int:
        return self._uint(4, field)

    def u64(self, field: str = "u64") -> int:
        return self._uint(8, field)

    def expect(self, expected: bytes, field: str) -> None:
        """Read ``len(expected)`` bytes that must equal ``expected`` (a magic or a reserved zero)."""
        offset = self.offset
        got = self.take(len(expected), field)
        if got != expected:
            self.fail(f"bad {field} at offset {offset}: {got.hex()} (expected {expected.hex()})")

    def expect_end(self) -> None:
        if self.remaining:
            self.fail(f"{self.remaining} trailing byte(s) at offset {self.offset}")


def require_bytes(name: str, value: object, size: int | None = None) -> bytes:
    """``value`` as bytes (from any bytes-like object), of ``size`` bytes when given; else InvalidArgumentError."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidArgumentError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if size is not None and len(value) != size:
        raise InvalidArgumentError(f"{name} must be {size} bytes, got {len(value)}")
    return value
