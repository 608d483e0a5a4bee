"""Layer 1: the cffi module compiled from mesatee.h, and status codes turned into exceptions.

Nothing here decides anything; it only loads the native library and moves
bytes across it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesatee.errors import Status, error_for_status

try:
    from mesatee._native import _mesatee_cffi
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "mesatee's native library is not built; install the package with `pip install .` "
        "(the pure-Python parts, such as verify_evidence, work without it)"
    ) from exc

ffi: Any = _mesatee_cffi.ffi
lib: Any = _mesatee_cffi.lib

NATIVE_DIR = Path(_mesatee_cffi.__file__).resolve().parent
ENCLAVE_IMAGE = NATIVE_DIR / "libmesatee_enclave.so"
#: The C++ package installed with the wheel: find_package(mesatee CONFIG) and pkg-config files, headers.
CMAKE_DIR = NATIVE_DIR / "cmake" / "mesatee"
INCLUDE_DIR = NATIVE_DIR / "include"


def last_error() -> str:
    return ffi.string(lib.mesatee_last_error_message()).decode("utf-8", "replace")


def check(status: int) -> None:
    """Raise the exception for a non-OK status, with the native message."""
    if status != Status.OK:
        raise error_for_status(status, last_error() or ffi.string(lib.mesatee_status_name(status)).decode())


def take_buffer(buffer: Any) -> bytes:
    """Copy a library-allocated mesatee_buffer into bytes and free it."""
    try:
        return bytes(ffi.buffer(buffer.data, buffer.size)) if buffer.size else b""
    finally:
        lib.mesatee_buffer_free(buffer)


def call_for_buffer(function: Any, *args: Any) -> bytes:
    """Call a C API function whose last argument is a mesatee_buffer* output."""
    buffer = ffi.new("mesatee_buffer*")
    try:
        check(function(*args, buffer))
    except BaseException:
        lib.mesatee_buffer_free(buffer)
        raise
    return take_buffer(buffer)
