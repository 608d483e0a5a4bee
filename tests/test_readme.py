"""The README's quick start runs as written (in a scratch folder, on a scratch platform)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_quick_start_runs(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S)
    assert code, "README.md has no Python quick start"
    assert len(code.group(1).strip().splitlines()) <= 12
    env = {"MESATEE_HOME": str(tmp_path / "platform"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 64  # the enclave's HPKE key, hex
    assert (tmp_path / "enclave.state").is_file()
