"""The architecture's rules, checked: layers import downward, trusted code stays apart, codes agree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from conftest import REPO
from mesatee import Status
from mesatee.errors import PYTHON_ONLY_STATUSES

PACKAGE = REPO / "python" / "mesatee"
# bindings → core → parties → node → service → cli; errors sits below them all.
LAYERS = {"errors": 0, "_native": 1, "_bindings": 1, "core": 2, "parties": 3, "node": 4, "service": 5, "cli": 6}
PURE = {"mesatee.core.attestation", "mesatee.core.binary", "mesatee.core.signing"}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "mesatee" else None


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("mesatee")}


def test_python_layers_import_downward_only() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("mesatee", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        own = _layer(module)
        if own is None:
            continue
        for imported in _imports(path):
            theirs = _layer(imported)
            assert theirs is None or theirs <= own, f"{module} (layer {own}) imports {imported} (layer {theirs})"
            if module in PURE:
                assert theirs is None or theirs != 1, f"{module} must not load the native library"


def test_pure_parts_work_without_the_native_library() -> None:
    code = (
        "import sys, mesatee, mesatee.core.attestation, mesatee.core.signing\n"
        "mesatee.AttestationPolicy(mrenclave=bytes(32))\n"
        "assert not any(m.startswith('mesatee._native') or m == 'mesatee._bindings' for m in sys.modules), "
        "sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_trusted_code_includes_nothing_from_the_host() -> None:
    for path in (REPO / "src" / "enclave").rglob("*"):
        if path.suffix in {".h", ".hpp", ".c", ".cpp"}:
            for line in path.read_text().splitlines():
                if line.startswith("#include"):
                    assert "host" not in line and "mesatee/mesatee.h" not in line and "mesatee_u.h" not in line, (
                        f"{path}: {line}"
                    )


def test_status_codes_match_the_header_and_the_library() -> None:
    from mesatee._bindings import ffi, lib

    header = (REPO / "edl" / "mesatee_types.h").read_text()
    in_header = {name: int(value) for name, value in re.findall(r"MESATEE_((?:OK|ERROR_\w+)) = (\d+)", header)}
    in_python = {
        ("OK" if s == Status.OK else f"ERROR_{s.name}"): int(s) for s in Status if s not in PYTHON_ONLY_STATUSES
    }
    assert in_header == in_python
    for name, value in in_python.items():
        assert getattr(lib, f"MESATEE_{name}") == value
        assert ffi.string(lib.mesatee_status_name(value)).decode() == name
    assert ffi.string(lib.mesatee_status_name(999)).decode() == "UNKNOWN_STATUS"
