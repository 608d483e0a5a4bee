"""The enclave, as the host process holds it: open, identity, evidence, sealing.

Every call goes through the C API (mesatee.h) and releases the GIL while the
enclave works, so threads sharing one enclave run in parallel.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mesatee import _bindings
from mesatee._bindings import check, ffi, lib
from mesatee.core.attestation import AttestationPolicy, VerifiedClaims
from mesatee.core.functions import FunctionDeclaration, parse_declarations
from mesatee.errors import InvalidArgumentError, MesateeError

SealPolicy = Literal["unique", "product"]
_POLICIES = {"unique": lib.MESATEE_SEAL_UNIQUE, "product": lib.MESATEE_SEAL_PRODUCT}
_PLATFORMS = {lib.MESATEE_PLATFORM_SOFTWARE: "software", lib.MESATEE_PLATFORM_SGX: "sgx"}

#: The enclave image built and signed with this package.
DEFAULT_IMAGE = _bindings.ENCLAVE_IMAGE


@dataclass(frozen=True)
class EnclaveIdentity:
    """What the platform measured when it loaded the enclave."""

    mrenclave: bytes
    mrsigner: bytes
    product_id: int
    security_version: int
    debug: bool
    platform: str


@dataclass(frozen=True)
class PublicKeys:
    """The enclave's long-term public keys: X25519 (HPKE) and Ed25519 (signing)."""

    hpke: bytes
    signing: bytes


def _identity(native: Any) -> EnclaveIdentity:
    return EnclaveIdentity(
        mrenclave=bytes(native.mrenclave),
        mrsigner=bytes(native.mrsigner),
        product_id=native.product_id,
        security_version=native.security_version,
        debug=bool(native.debug),
        platform=_PLATFORMS.get(native.platform, f"unknown({native.platform})"),
    )


_scratch = threading.local()
_SCRATCH_KEEP = 64 << 20


def _output_buffer(size: int) -> tuple[Any, Any]:
    """A per-thread output buffer of at least ``size`` bytes and a size_t for the written size.

    Reused across calls: a fresh zeroed multi-megabyte buffer per call costs
    more in page faults than sealing it does.
    """
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = ffi.new("uint8_t[]", max(size, 1))
        if size <= _SCRATCH_KEEP:
            _scratch.buffer = buffer
    out_size = getattr(_scratch, "out_size", None)
    if out_size is None:
        out_size = _scratch.out_size = ffi.new("size_t*")
    return buffer, out_size


def _write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace path with data, readable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Enclave:
    """An enclave instance.

    ``sealed_state`` (or ``state_file``) carries the enclave's long-term keys
    between runs: without it the enclave starts with fresh keys; with it, the
    same keys as before. ``state_file`` is read when it exists and written
    (owner-only, atomically) whenever the enclave hands out new state.
    """

    def __init__(
        self,
        image: str | os.PathLike[str] | None = None,
        *,
        platform_dir: str | os.PathLike[str] | None = None,
        sealed_state: bytes | None = None,
        state_file: str | os.PathLike[str] | None = None,
        signature: str | os.PathLike[str] | None = None,
    ) -> None:
        if sealed_state is not None and state_file is not None:
            raise InvalidArgumentError("give sealed_state or state_file, not both")
        state_path = Path(state_file) if state_file is not None else None
        if state_path is not None and state_path.exists():
            sealed_state = state_path.read_bytes()
        state = sealed_state or b""
        keep = []  # the strings must outlive the call

        def c_str(value: Any) -> Any:
            if value is None:
                return ffi.NULL
            keep.append(ffi.new("char[]", os.fsencode(value)))
            return keep[-1]

        config = ffi.new("mesatee_enclave_config*")
        config.image_path = c_str(image if image is not None else DEFAULT_IMAGE)
        config.signature_path = c_str(signature)
        config.platform_dir = c_str(platform_dir)
        state_buf = ffi.from_buffer(state)
        config.sealed_state = state_buf
        config.sealed_state_size = len(state)
        handle = ffi.new("mesatee_enclave**")
        check(lib.mesatee_enclave_open(config, handle))
        self._handle: Any = handle[0]
        native = ffi.new("mesatee_identity*")
        check(lib.mesatee_enclave_identity(self._handle, native))
        self.identity: EnclaveIdentity = _identity(native)
        hpke, signing = ffi.new("uint8_t[32]"), ffi.new("uint8_t[32]")
        check(lib.mesatee_enclave_public_keys(self._handle, hpke, signing))
        self.public_keys = PublicKeys(bytes(hpke), bytes(signing))
        if state_path is not None and self.sealed_state != sealed_state:
            _write_private_file(state_path, self.sealed_state)

    def _h(self) -> Any:
        if self._handle is None:
            raise MesateeError("the enclave is closed")
        return self._handle

    @property
    def sealed_state(self) -> bytes:
        """The enclave's keys, sealed to its product, for the host to store."""
        return _bindings.call_for_buffer(lib.mesatee_enclave_sealed_state, self._h())

    def evidence(self, nonce: bytes = b"") -> bytes:
        """Evidence binding the enclave's public keys and ``nonce`` (at most 64 bytes)."""
        return _bindings.call_for_buffer(lib.mesatee_enclave_evidence, self._h(), nonce, len(nonce))

    def seal(self, data: bytes, aad: bytes = b"", *, policy: SealPolicy = "product") -> bytes:
        """Encrypt ``data`` so only this enclave (``unique``) or its product line (``product``) opens it."""
        code = _POLICIES.get(policy)
        if code is None:
            raise InvalidArgumentError(f"unknown seal policy {policy!r}; use 'unique' or 'product'")
        size = lib.mesatee_sealed_size(len(data))
        out, out_size = _output_buffer(size)
        check(
            lib.mesatee_enclave_seal(
                self._h(), code, ffi.from_buffer(data), len(data), ffi.from_buffer(aad), len(aad), out, size, out_size
            )
        )
        return ffi.buffer(out, out_size[0])[:]

    def unseal(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Open a sealed blob; raises SealingError or FormatError on any defect."""
        size = lib.mesatee_unsealed_capacity(len(blob))
        out, out_size = _output_buffer(size)
        check(
            lib.mesatee_enclave_unseal(
                self._h(), ffi.from_buffer(blob), len(blob), ffi.from_buffer(aad), len(aad), out, size, out_size
            )
        )
        return ffi.buffer(out, out_size[0])[:]

    def invoke(self, invocation: bytes) -> bytes:
        """Run a task: canonical invocation in, canonical result out (see ``mesatee.core.manifest``).

        A refused task raises ``TaskRefusedError`` naming the failed check; nothing is output.
        """
        return _bindings.call_for_buffer(lib.mesatee_enclave_invoke, self._h(), invocation, len(invocation))

    def functions(self) -> dict[str, FunctionDeclaration]:
        """The built-in functions this enclave runs, with their declared arguments and slots."""
        return parse_declarations(_bindings.call_for_buffer(lib.mesatee_enclave_functions, self._h()))

    def ping(self) -> None:
        """Cross the boundary and back (measures the call overhead)."""
        check(lib.mesatee_enclave_ping(self._h()))

    def close(self) -> None:
        """Destroy the enclave instance; must not race with calls on it."""
        handle, self._handle = self._handle, None
        if handle is not None:
            lib.mesatee_enclave_close(handle)

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()


def functions(
    image: str | os.PathLike[str] | None = None, *, platform_dir: str | os.PathLike[str] | None = None
) -> dict[str, FunctionDeclaration]:
    """The built-in catalog of an enclave image (default: the packaged one)."""
    with Enclave(image, platform_dir=platform_dir) as enclave:
        return enclave.functions()


def cmake_dir() -> Path:
    """The folder holding ``mesateeConfig.cmake``, for ``cmake -Dmesatee_DIR=...`` (see docs/cpp.md)."""
    return _bindings.CMAKE_DIR


def get_include() -> Path:
    """The folder to put on a C or C++ compiler's include path for ``<mesatee/mesatee.h>``."""
    return _bindings.INCLUDE_DIR


def platform_root_certificate(platform_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The software platform's root certificate (DER), for verifiers' trusted roots."""
    path = ffi.new("char[]", os.fsencode(platform_dir)) if platform_dir is not None else ffi.NULL
    return _bindings.call_for_buffer(lib.mesatee_platform_root_certificate, path)


def verify_evidence_native(
    evidence: bytes, policy: AttestationPolicy, *, nonce: bytes | None = None, now: datetime | None = None
) -> VerifiedClaims:
    """The C++ verifier (mesatee_verify_evidence): the same checks as ``mesatee.verify_evidence``."""
    if now is not None and now.tzinfo is None:
        raise InvalidArgumentError("now must be timezone-aware")
    at_time = int(now.timestamp()) if now is not None else 0
    keep = []
    native = ffi.new("mesatee_attestation_policy*")
    if policy.mrenclave is not None:
        keep.append(ffi.from_buffer(policy.mrenclave))
        native.mrenclave = keep[-1]
    if policy.mrsigner is not None:
        keep.append(ffi.from_buffer(policy.mrsigner))
        native.mrsigner = keep[-1]
    native.has_product_id = policy.product_id is not None
    native.product_id = policy.product_id or 0
    native.min_security_version = policy.min_security_version
    native.allow_debug = policy.allow_debug
    native.allow_software = policy.allow_software
    roots = ffi.new("mesatee_bytes[]", max(len(policy.trusted_roots), 1))
    for i, der in enumerate(policy.trusted_roots):
        keep.append(ffi.from_buffer(der))
        roots[i].data = keep[-1]
        roots[i].size = len(der)
    native.trusted_roots = roots
    native.trusted_root_count = len(policy.trusted_roots)
    out = ffi.new("mesatee_verified_claims*")
    nonce_ptr = ffi.from_buffer(nonce) if nonce is not None else ffi.NULL
    check(lib.mesatee_verify_evidence(evidence, len(evidence), nonce_ptr, len(nonce or b""), native, at_time, out))
    identity = _identity(out.identity)
    return VerifiedClaims(
        platform=identity.platform,
        mrenclave=identity.mrenclave,
        mrsigner=identity.mrsigner,
        product_id=identity.product_id,
        security_version=identity.security_version,
        debug=identity.debug,
        hpke_public_key=bytes(out.hpke_public_key),
        signing_public_key=bytes(out.signing_public_key),
        nonce=bytes(out.nonce)[: out.nonce_size],
    )
