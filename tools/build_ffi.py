"""Generate the C source of mesatee's cffi extension (API mode) from mesatee.h.

The cdef is mesatee.h itself, run through the C preprocessor with
MESATEE_CDEF defined (which drops includes, attributes and extern "C"), so the
Python binding can never drift from the header.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cffi

# A no-op C function beside the real API: the baseline of the call benchmark.
EXTRA_SOURCE = "static int mesatee_cffi_noop(void) { return 0; }\n"
EXTRA_CDEF = "int mesatee_cffi_noop(void);\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", required=True)
    ap.add_argument("--include", action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    ns = ap.parse_args()
    header = next(Path(d) / "mesatee" / "mesatee.h" for d in ns.include if (Path(d) / "mesatee" / "mesatee.h").exists())
    cmd = [ns.cc, "-E", "-P", "-DMESATEE_CDEF", *(f"-I{d}" for d in ns.include), str(header)]
    cdef = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ffi = cffi.FFI()
    ffi.cdef(cdef + EXTRA_CDEF)
    ffi.set_source("mesatee._native._mesatee_cffi", '#include "mesatee/mesatee.h"\n' + EXTRA_SOURCE)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ffi.emit_c_code(str(ns.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
