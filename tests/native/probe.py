"""Builds and calls tests/native/probe.cpp: the trusted sources as a plain library (tests and benchmarks)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class ProbeBuildError(RuntimeError):
    pass


class Probe:
    """Calls ``probe_call(op, request)`` with canonical msgpack in and out."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        self._lib.probe_call.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        self._lib.probe_free.argtypes = [ctypes.POINTER(ctypes.c_uint8)]

    def __call__(self, op: str, **request: Any) -> Any:
        """The reply, or a MesateeError carrying the trusted code's status and message."""
        from mesatee.core import canonical
        from mesatee.errors import error_for_status

        data = canonical.encode(request)
        reply, size = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t()
        status = self._lib.probe_call(op.encode(), data, len(data), ctypes.byref(reply), ctypes.byref(size))
        try:
            raw = ctypes.string_at(reply, size.value)
        finally:
            self._lib.probe_free(reply)
        if status:
            raise error_for_status(status, raw.decode("utf-8", "replace"))
        return canonical.decode(raw, max_size=1 << 30)


NATIVE_BUILD = REPO / "build" / "native"


def cmake_build(build_dir: Path, *options: str, target: str | None = None) -> None:
    """Configures (once) and builds with CMake; incremental afterwards."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise ProbeBuildError("cmake is needed to build the native test probe (pip install cmake)")
    configure = [cmake, "-S", str(REPO), "-B", str(build_dir), "-DMESATEE_BUILD_PYTHON=OFF", *options]
    if not (build_dir / "CMakeCache.txt").exists() and shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    build = [cmake, "--build", str(build_dir), "-j", "2", *(["--target", target] if target else [])]
    for command in (configure, build):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ProbeBuildError(f"the native build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


def build_probe(build_dir: Path = NATIVE_BUILD) -> Probe:
    """The probe, from the native build folder that the install and native tests share."""
    cmake_build(build_dir, "-DMESATEE_BUILD_PROBE=ON", "-DMESATEE_BUILD_NATIVE_TESTS=ON", target="mesatee_probe")
    return Probe(next(build_dir.glob("libmesatee_probe.so*")))
