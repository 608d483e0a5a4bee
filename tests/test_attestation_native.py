"""The C++ verifier (mesatee_verify_evidence) and the Python one must agree on every piece of evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import evidence_factory as ef
import mesatee
from mesatee import AttestationError, AttestationPolicy, MesateeError, Status
from mesatee.core.attestation import verify_evidence
from mesatee.core.enclave import verify_evidence_native
from test_attestation_python import CASES, FORMAT_CASES, policy


def verdict(function: Any, evidence: bytes, pol: AttestationPolicy, **kwargs: Any) -> Any:
    try:
        return function(evidence, pol, **kwargs)
    except MesateeError as error:
        assert isinstance(error, AttestationError), error
        return error.status


def agree(evidence: bytes, pol: AttestationPolicy, **kwargs: Any) -> Any:
    python, native = (
        verdict(verify_evidence, evidence, pol, **kwargs),
        verdict(verify_evidence_native, evidence, pol, **kwargs),
    )
    assert python == native
    return python


@pytest.mark.parametrize(("name", "options", "overrides", "kwargs", "status"), CASES, ids=[c[0] for c in CASES])
def test_factory_refusals_agree(
    name: str, options: Any, overrides: Any, kwargs: dict[str, Any], status: Status
) -> None:
    options = options() if callable(options) else options
    evidence, root_der = ef.make_evidence(**options)
    if overrides == "own root":
        overrides = {"trusted_roots": (root_der,)}
    assert agree(evidence, policy(**overrides), **kwargs) == status


@pytest.mark.parametrize(("name", "options"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_malformed_agree(name: str, options: dict[str, Any]) -> None:
    evidence, _ = ef.make_evidence(**options)
    assert agree(evidence, policy()) == Status.EVIDENCE_MALFORMED


def test_odd_certificates_agree() -> None:
    for der in (ef.mismatched_algorithm_attestation_der(), ef.padded_signature_attestation_der()):
        evidence, _ = ef.make_evidence(attestation_der=der)
        assert agree(evidence, policy()) == Status.CERTIFICATE_INVALID


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, AttestationPolicy, mesatee.Enclave]:
    folder = tmp_path_factory.mktemp("att") / "platform"
    with mesatee.Enclave(platform_dir=folder) as enclave:
        pol = AttestationPolicy(
            mrenclave=enclave.identity.mrenclave,
            mrsigner=enclave.identity.mrsigner,
            product_id=enclave.identity.product_id,
            min_security_version=1,
            allow_software=True,
            trusted_roots=[mesatee.platform_root_certificate(folder)],
        )
        yield enclave.evidence(b"challenge"), pol, enclave


def test_real_evidence_accepted_by_both(real: tuple[bytes, AttestationPolicy, mesatee.Enclave]) -> None:
    evidence, pol, enclave = real
    claims = agree(evidence, pol, nonce=b"challenge")
    assert claims.hpke_public_key == enclave.public_keys.hpke
    assert claims.signing_public_key == enclave.public_keys.signing
    assert claims.mrenclave == enclave.identity.mrenclave and claims.nonce == b"challenge"
    assert agree(evidence, pol) == claims  # no nonce expected: any is accepted


def test_real_evidence_policy_refusals_agree(real: tuple[bytes, AttestationPolicy, mesatee.Enclave]) -> None:
    evidence, pol, _ = real
    other = bytes(32)
    cases = {
        Status.MRENCLAVE_MISMATCH: {"mrenclave": other},
        Status.MRSIGNER_MISMATCH: {"mrsigner": other},
        Status.PRODUCT_ID_MISMATCH: {"product_id": 9},
        Status.SECURITY_VERSION_TOO_LOW: {"min_security_version": 2},
        Status.PLATFORM_NOT_ALLOWED: {"allow_software": False},
        Status.UNTRUSTED_ROOT: {"trusted_roots": [ef.default_platform().root_der]},
    }
    for status, change in cases.items():
        fields = {**pol.__dict__, **change}
        assert agree(evidence, AttestationPolicy(**fields), nonce=b"challenge") == status
    assert agree(evidence, pol, nonce=b"other") == Status.NONCE_MISMATCH
    assert agree(evidence, pol, nonce=b"") == Status.NONCE_MISMATCH


def test_debug_enclave_needs_allow_debug(make_image, platform_dir: Path) -> None:
    with mesatee.Enclave(make_image(debug=True, variant=31), platform_dir=platform_dir) as enclave:
        evidence = enclave.evidence()
        pol = AttestationPolicy(
            mrenclave=enclave.identity.mrenclave,
            allow_software=True,
            trusted_roots=[mesatee.platform_root_certificate(platform_dir)],
        )
    assert agree(evidence, pol) == Status.DEBUG_NOT_ALLOWED
    assert agree(evidence, AttestationPolicy(**{**pol.__dict__, "allow_debug": True})).debug


def test_every_byte_flip_of_real_evidence_refused_alike(real: tuple[bytes, AttestationPolicy, mesatee.Enclave]) -> None:
    evidence, pol, _ = real
    seen = set()
    for offset in range(len(evidence)):
        changed = bytearray(evidence)
        changed[offset] ^= 0x01
        status = agree(bytes(changed), pol, nonce=b"challenge")
        assert isinstance(status, Status), f"a flip at offset {offset} was accepted"
        seen.add(status)
    assert Status.REPORT_SIGNATURE_INVALID in seen and Status.CLAIMS_MISMATCH in seen


def test_every_truncation_and_extension_refused_alike(real: tuple[bytes, AttestationPolicy, mesatee.Enclave]) -> None:
    evidence, pol, _ = real
    for size in range(len(evidence)):
        assert agree(evidence[:size], pol) == Status.EVIDENCE_MALFORMED
    assert agree(evidence + b"\x00", pol) == Status.EVIDENCE_MALFORMED
    assert agree(evidence + bytes(20000), pol) == Status.EVIDENCE_MALFORMED


def test_replayed_evidence_for_another_nonce_refused(real: tuple[bytes, AttestationPolicy, mesatee.Enclave]) -> None:
    _, pol, enclave = real
    old = enclave.evidence(b"monday")
    assert agree(old, pol, nonce=b"tuesday") == Status.NONCE_MISMATCH
