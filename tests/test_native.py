"""mesatee as a C++ library: native tests under sanitizers, an installed package, and a C++ service
embedding it, running a task prepared by Python parties."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from mesatee.core.attestation import AttestationPolicy
from mesatee.core.manifest import TaskResult
from mesatee.parties import Party
from native.probe import NATIVE_BUILD, ProbeBuildError, cmake_build
from task_host import prepare

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave"


def _run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _build(build_dir: Path, *options: str) -> None:
    try:
        cmake_build(build_dir, *options)
    except ProbeBuildError as exc:
        pytest.fail(str(exc))


SANITIZED = REPO / "build" / "sanitize"
# LeakSanitizer needs ptrace, which these sandboxes refuse to a test's child process; memory errors and
# undefined behaviour stay fatal. (From a plain shell the binaries also run clean with detect_leaks=1.)
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}


@pytest.fixture(scope="module")
def sanitized() -> Path:
    """The native tests and the probe, built with AddressSanitizer and UBSan (UB fatal)."""
    _build(SANITIZED, "-DMESATEE_BUILD_NATIVE_TESTS=ON", "-DMESATEE_BUILD_PROBE=ON",
           "-DMESATEE_SANITIZE=address,undefined", "-DCMAKE_BUILD_TYPE=RelWithDebInfo")  # fmt: skip
    return SANITIZED


def test_native_tests_under_address_and_undefined_sanitizers(sanitized: Path, tmp_path: Path) -> None:
    env = dict(os.environ, **SANITIZER_ENV)
    done = _run(sanitized / "mesatee_native_tests", sanitized / "libmesatee_enclave.so", tmp_path / "platform", env=env)
    assert "7 passed, 0 failed" in done.stdout, done.stdout


def test_function_parsers_fuzzed_under_sanitizers(sanitized: Path) -> None:
    """Every built-in's inputs, mutated from Teaclave's cases, through the sanitized trusted code."""
    import sys

    runtimes = [_run("cc", f"-print-file-name={lib}").stdout.strip() for lib in ("libasan.so", "libubsan.so")]
    env = dict(os.environ, **SANITIZER_ENV, LD_PRELOAD=":".join(runtimes))
    done = _run(sys.executable, REPO / "tests" / "native" / "fuzz_functions.py",
                next(sanitized.glob("libmesatee_probe.so*")), TEACLAVE, "1500", env=env)  # fmt: skip
    runs, refused = (int(w) for w in done.stdout.split() if w.isdigit())
    assert runs > 25_000 and 0 < refused < runs, done.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mesatee built and installed with a plain `cmake --install`, as a C++ user does."""
    _build(NATIVE_BUILD, "-DMESATEE_BUILD_PROBE=ON", "-DMESATEE_BUILD_NATIVE_TESTS=ON")
    prefix = tmp_path_factory.mktemp("prefix")
    _run(shutil.which("cmake") or "cmake", "--install", NATIVE_BUILD, "--prefix", prefix)
    return prefix


def test_installed_package_layout(prefix: Path) -> None:
    for path in ("include/mesatee/mesatee.h", "include/mesatee/mesatee.hpp", "include/mesatee/mesatee_types.h",
                 "lib/libmesatee_host.so", "lib/mesatee/libmesatee_enclave.so", "lib/mesatee/libmesatee_enclave.so.sig",
                 "lib/cmake/mesatee/mesateeConfig.cmake", "lib/cmake/mesatee/mesateeConfigVersion.cmake",
                 "lib/pkgconfig/mesatee.pc"):  # fmt: skip
        assert (prefix / path).is_file(), path
    # the installed image is the signed one, byte for byte
    assert (prefix / "lib/mesatee/libmesatee_enclave.so").read_bytes() == (
        NATIVE_BUILD / "libmesatee_enclave.so"
    ).read_bytes()


def test_pkg_config(prefix: Path, tmp_path: Path) -> None:
    if not shutil.which("pkg-config"):
        pytest.fail("pkg-config is needed (apt-get install pkg-config)")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
    flags = _run("pkg-config", "--cflags", "--libs", "mesatee", env=env).stdout.split()
    image = _run("pkg-config", "--variable=enclave_image", "mesatee", env=env).stdout.strip()
    assert Path(image).resolve() == (prefix / "lib/mesatee/libmesatee_enclave.so").resolve()
    source = tmp_path / "status.c"
    program = "int main(void) { puts(mesatee_status_name(MESATEE_ERROR_UNSEAL_FAILED)); return 0; }"
    source.write_text(f"#include <stdio.h>\n#include <mesatee/mesatee.h>\n{program}\n")
    libdir = next(f[2:] for f in flags if f.startswith("-L"))
    _run("cc", source, "-o", tmp_path / "status", *flags, f"-Wl,-rpath,{libdir}")
    assert _run(tmp_path / "status").stdout.strip() == "ERROR_UNSEAL_FAILED"


def test_cpp_service_runs_a_task_prepared_by_python_parties(prefix: Path, tmp_path: Path) -> None:
    build = tmp_path / "service-build"
    _run(shutil.which("cmake") or "cmake", "-S", REPO / "examples" / "cpp_service", "-B", build,
         f"-DCMAKE_PREFIX_PATH={prefix}")  # fmt: skip
    _run(shutil.which("cmake") or "cmake", "--build", build)
    service, work = build / "cpp_service", tmp_path / "work"
    work.mkdir()

    # 1. The service starts and publishes its evidence for a nonce the parties chose.
    nonce = os.urandom(32)
    (work / "nonce.bin").write_bytes(nonce)
    started = _run(service, work, "start").stdout
    assert "evidence verified" in started

    # 2. Each party verifies it with its own policy before trusting the enclave with anything.
    alice, bob = Party.generate(), Party.generate()
    evidence = (work / "evidence.bin").read_bytes()
    mrenclave = bytes.fromhex(started.split("mrenclave ")[1].split()[0])
    policy = AttestationPolicy(
        mrenclave=mrenclave, allow_software=True, trusted_roots=[(work / "root.der").read_bytes()]
    )
    claims = alice.verify_enclave(evidence, policy, nonce=nonce)
    assert bob.verify_enclave(evidence, policy, nonce=nonce) == claims

    # 3. They prepare a task on disk; the service (restarted, same sealed keys) runs it.
    task = prepare(
        tmp_path / "task", claims, alice, "ordered_set_intersect",
        inputs={"input_data1": (alice, (TEACLAVE / "ordered_set_intersect" / "psi0.txt").read_bytes()),
                "input_data2": (bob, (TEACLAVE / "ordered_set_intersect" / "psi1.txt").read_bytes())},
        outputs={"output_result1": [alice], "output_result2": [bob]},
    )  # fmt: skip
    (work / "invocation.bin").write_bytes(task.invocation())
    assert "task done" in _run(service, work, "invoke").stdout

    # 4. Each party opens what is addressed to it.
    result = TaskResult.from_bytes((work / "result.bin").read_bytes())
    assert dict(alice.open_result(result, task.manifest, claims).outputs) == {"output_result1": b"0101010"}
    opened = bob.open_result(result, task.manifest, claims)
    assert dict(opened.outputs) == {"output_result2": b"01101"} and opened.return_value == b"3 common items"


def test_the_wheel_carries_the_cpp_package(tmp_path: Path) -> None:
    """The Python package installs the same C++ package: a service builds against it with no other install."""
    import mesatee

    assert (mesatee.cmake_dir() / "mesateeConfig.cmake").is_file()
    assert (mesatee.get_include() / "mesatee" / "mesatee.hpp").is_file()
    build = tmp_path / "service-build"
    _run(shutil.which("cmake") or "cmake", "-S", REPO / "examples" / "cpp_service", "-B", build,
         f"-Dmesatee_DIR={mesatee.cmake_dir()}")  # fmt: skip
    _run(shutil.which("cmake") or "cmake", "--build", build)
    work = tmp_path / "work"
    work.mkdir()
    assert "evidence verified" in _run(build / "cpp_service", work, "start").stdout


def test_cpp_service_refuses_a_tampered_invocation(prefix: Path, tmp_path: Path) -> None:
    build = tmp_path / "service-build"
    _run(shutil.which("cmake") or "cmake", "-S", REPO / "examples" / "cpp_service", "-B", build,
         f"-DCMAKE_PREFIX_PATH={prefix}")  # fmt: skip
    _run(shutil.which("cmake") or "cmake", "--build", build)
    work = tmp_path / "work"
    work.mkdir()
    (work / "invocation.bin").write_bytes(b"\x81\xa1x\xc0")
    done = subprocess.run([build / "cpp_service", work, "invoke"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "ERROR_FORMAT" in done.stderr and not (work / "result.bin").exists()
