"""Shared fixtures: temporary platform folders and signed variants of the enclave image."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

ImageFactory = Callable[..., Path]


@pytest.fixture
def platform_dir(tmp_path: Path) -> Path:
    """A platform folder of its own for one test (created on first use)."""
    return tmp_path / "platform"


@pytest.fixture(scope="session")
def shared_platform(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared") / "platform"


@pytest.fixture(scope="session")
def signer_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def make_image(tmp_path_factory: pytest.TempPathFactory, signer_key: Ed25519PrivateKey) -> ImageFactory:
    """Copies of the built enclave image, signed by a test signer with any config.

    ``variant`` appends bytes after the ELF image (the loader ignores them), which
    gives another mrenclave with the same code: a "different image" of one product.
    """
    from mesatee.core.enclave import DEFAULT_IMAGE
    from mesatee.core.signing import EnclaveConfig, sign_image

    original = DEFAULT_IMAGE.read_bytes()

    def make(
        *,
        security_version: int = 1,
        product_id: int = 1,
        debug: bool = False,
        variant: int = 0,
        key: Ed25519PrivateKey | None = None,
    ) -> Path:
        folder = tmp_path_factory.mktemp("image")
        image = folder / "enclave.so"
        image.write_bytes(original + (b"mesatee-test-variant-%d" % variant if variant else b""))
        signature = sign_image(image, key or signer_key, EnclaveConfig(product_id, security_version, debug))
        image.with_name("enclave.so.sig").write_bytes(signature.to_bytes())
        return image

    return make


class Probe:
    """The trusted sources as a plain library (tests/native/probe.cpp), called with canonical msgpack."""

    def __init__(self, path: Path) -> None:
        import ctypes

        self._lib = ctypes.CDLL(str(path))
        self._lib.probe_call.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        self._lib.probe_free.argtypes = [ctypes.POINTER(ctypes.c_uint8)]
        self._ctypes = ctypes

    def __call__(self, op: str, **request: object) -> object:
        """The reply, or a MesateeError carrying the trusted code's status and message."""
        from mesatee.core import canonical
        from mesatee.errors import error_for_status

        ctypes = self._ctypes
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


@pytest.fixture(scope="session")
def probe() -> Probe:
    """Builds the probe with CMake once (kept in build/probe between runs)."""
    import shutil
    import subprocess

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is needed to build the native test probe (pip install cmake)")
    build = REPO / "build" / "probe"
    configure = [cmake, "-S", str(REPO), "-B", str(build), "-DMESATEE_BUILD_PROBE=ON", "-DMESATEE_BUILD_PYTHON=OFF",
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"] if not (build / "CMakeCache.txt").exists() else []
    for command in (configure, [cmake, "--build", str(build), "--target", "mesatee_probe", "-j", "2"]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building the probe failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return Probe(next(build.glob("libmesatee_probe.so*")))
