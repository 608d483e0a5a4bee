"""Shared fixtures: temporary platform folders and signed variants of the enclave image."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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


class TaskWorld(NamedTuple):
    """One enclave on its own platform, attested by four parties' policy (tests/task_host.py runs tasks on it)."""

    enclave: Any
    claims: Any
    parties: tuple[Any, ...]


@pytest.fixture(scope="session")
def task_world(tmp_path_factory: pytest.TempPathFactory):
    import mesatee
    from mesatee.parties import Party
    from task_host import attest

    platform_dir = tmp_path_factory.mktemp("world") / "platform"
    with mesatee.Enclave(platform_dir=platform_dir) as enclave:
        parties = tuple(Party.generate() for _ in range(4))
        yield TaskWorld(enclave, attest(enclave, platform_dir, parties[0]), parties)


@pytest.fixture(scope="session")
def probe():
    """The trusted sources as a plain library (tests/native), built with CMake once per checkout."""
    from native.probe import ProbeBuildError, build_probe

    try:
        return build_probe()
    except ProbeBuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["local", "remote"])
def node_world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A node with its own enclave on a fresh platform, alice, bob and carol admitted; two enclave workers.

    ``local``: the clients call the ``Node`` in process, which runs the tasks. ``remote``: they call a
    ``RemoteNode`` of a service serving the same folder in a subprocess, which runs the tasks (the test's
    ``Node`` only admits parties and reads the audit log: workers=0).
    """
    from node_host import open_world, served_world

    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    if request.param == "remote":
        with served_world(tmp_path / "node") as (world, _service):
            yield world
        return
    world = open_world(tmp_path / "node", workers=2)
    try:
        yield world
    finally:
        world.node.close()
