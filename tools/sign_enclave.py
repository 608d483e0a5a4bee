"""Sign the enclave image at build time with the source tree's mesatee.core.signing.

A script rather than `PYTHONPATH=... python -m`: the build may run in an
isolated environment whose own path must stay intact.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from mesatee.core.signing import main

if __name__ == "__main__":
    sys.exit(main(["sign", *sys.argv[1:]]))
