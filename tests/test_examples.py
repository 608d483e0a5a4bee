"""The runnable examples: each runs with no arguments, in its own temporary folder, and tells its story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXPECTED = {
    "three_banks.py": ["bank_c learns: 3 users join the task in total.", "c : 470000", "e : 5033000"],
    "multiparty_psi.py": ["lakeside: 3 common items: p-1042, p-3377, p-6022"],
    "logistic_regression.py": ["firm: Trained 400 lines of data.", "clinic: Predicted 200 lines of data.",
                               "the firm's result holds nothing for it: True"],
}  # fmt: skip


def test_every_example_is_tested() -> None:
    assert sorted(path.name for path in (REPO / "examples").glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_prints_its_results(script: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    for line in EXPECTED[script]:
        assert line in run.stdout
    assert list(tmp_path.iterdir()) == []  # everything lived in the example's own temporary folder
