"""The benchmark harness runs end to end (--quick) and reports every figure with its baseline.

Goals are never asserted here: timing on a shared machine is noise.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FIGURES = {
    "sealing.1MiB",
    "sealing.1MiB.libcrypto",
    "sealing.4KiB",
    "calls.ping",
    "calls.ping_raw",
    "attestation.python",
    "attestation.native",
    "protocol.hpke_open",
    "protocol.file_encrypt.python",
    "protocol.file_decrypt.python",
    "protocol.file_encrypt.cpp",
    "protocol.file_decrypt.cpp",
    "protocol.file_encrypt.cpp.libcrypto",
    "invoke.echo",
}


def test_quick_run_reports_every_figure_beside_a_baseline(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    figures = {f["id"]: f for f in document["figures"]}
    assert set(figures) >= FIGURES
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run

    for name in run.BENCHMARKS:  # every benchmark reported, its figures' ids prefixed with its name
        assert any(fid.startswith(f"{name}.") for fid in figures), name
    for fid, f in figures.items():
        assert math.isfinite(f["value"]) and f["value"] > 0, fid
        assert f["baseline"]["name"], fid
        assert math.isfinite(f["baseline"]["value"]) and f["baseline"]["value"] > 0, fid
        assert f["ratio"] > 0, fid
        assert f["name"] in result.stdout, fid  # and it was printed
