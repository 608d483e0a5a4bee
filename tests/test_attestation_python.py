"""The pure-Python evidence verifier against evidence built by ``evidence_factory``."""

from __future__ import annotations

import struct
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).parent))

import evidence_factory as ef
from mesatee.core.attestation import (
    MAX_EVIDENCE_SIZE,
    REPORT_SIZE,
    AttestationPolicy,
    VerifiedClaims,
    claims_digest,
    parse_evidence,
    verify_evidence,
)
from mesatee.core.binary import Reader
from mesatee.errors import (
    AttestationError,
    EvidenceFormatError,
    FormatError,
    InvalidArgumentError,
    Status,
)

OTHER = bytes([0xEE]) * 32


def root() -> bytes:
    return ef.default_platform().root_der


def policy(**overrides: Any) -> AttestationPolicy:
    fields: dict[str, Any] = {
        "mrenclave": ef.MRENCLAVE,
        "mrsigner": ef.MRSIGNER,
        "product_id": ef.PRODUCT_ID,
        "min_security_version": ef.SECURITY_VERSION,
        "allow_software": True,
        "trusted_roots": (root(),),
    }
    fields.update(overrides)
    return AttestationPolicy(**fields)


def refused(evidence: bytes, pol: AttestationPolicy | None = None, **kwargs: Any) -> AttestationError:
    with pytest.raises(AttestationError) as info:
        verify_evidence(evidence, pol or policy(), **kwargs)
    return info.value


# --------------------------------------------------------------------------- accepted


def test_accepted_evidence_returns_its_claims() -> None:
    evidence, root_der = ef.make_evidence(nonce=b"fresh nonce")
    claims = verify_evidence(evidence, policy(trusted_roots=[root_der]), nonce=b"fresh nonce")
    assert claims == VerifiedClaims(
        platform="software",
        mrenclave=ef.MRENCLAVE,
        mrsigner=ef.MRSIGNER,
        product_id=ef.PRODUCT_ID,
        security_version=ef.SECURITY_VERSION,
        debug=False,
        hpke_public_key=ef.HPKE_PUBLIC_KEY,
        signing_public_key=ef.SIGNING_PUBLIC_KEY,
        nonce=b"fresh nonce",
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"mrsigner": None, "product_id": None},
        {"mrenclave": None},
        {"min_security_version": 0},
        {"trusted_roots": [ef.make_platform().root_der, root()]},
    ],
)
def test_accepted_under_each_policy_shape(overrides: dict[str, Any]) -> None:
    evidence, _ = ef.make_evidence()
    assert verify_evidence(evidence, policy(**overrides)).nonce == b""


def test_accepts_a_64_byte_nonce_debug_when_allowed_and_without_nonce_check() -> None:
    nonce = bytes(range(64))
    evidence, _ = ef.make_evidence(nonce=nonce, debug=True, hpke_public_key=OTHER)
    claims = verify_evidence(bytearray(evidence), policy(allow_debug=True))
    assert (claims.nonce, claims.debug, claims.hpke_public_key) == (nonce, True, OTHER)
    assert verify_evidence(memoryview(evidence), policy(allow_debug=True), nonce=nonce) == claims


def test_now_inside_validity_window_is_accepted() -> None:
    evidence, _ = ef.make_evidence()
    verify_evidence(evidence, policy(), now=datetime.now(UTC) + timedelta(days=365 * 19))


def test_parse_evidence_exposes_fields() -> None:
    evidence, _ = ef.make_evidence(nonce=b"n", debug=True, product_id=9, security_version=513)
    parsed = parse_evidence(evidence)
    assert parsed.platform == 1
    assert parsed.claims == ef.make_claims(ef.HPKE_PUBLIC_KEY, ef.SIGNING_PUBLIC_KEY, b"n")
    assert parsed.report_data == claims_digest(parsed.claims) + bytes(32)
    assert len(parsed.report) == REPORT_SIZE and len(parsed.signature) == 64
    assert (parsed.product_id, parsed.security_version, parsed.debug) == (9, 513, True)
    assert parsed.attestation_cert == ef.default_platform().attestation_der
    assert parsed.root_cert == root()
    assert evidence[8 : 8 + len(parsed.claims)] == parsed.claims


# --------------------------------------------------------------------------- refusals, one per check


def _expired() -> ef.SoftwarePlatform:
    now = datetime.now(UTC)
    return ef.make_platform(not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))


def _not_yet_valid() -> ef.SoftwarePlatform:
    now = datetime.now(UTC)
    return ef.make_platform(not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))


def _foreign_issuer_name() -> ef.SoftwarePlatform:
    base = ef.default_platform()
    cert = x509.load_der_x509_certificate(base.root_der)
    key, att = ef.make_attestation_cert(
        base.root_key, cert, issuer_name=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    )
    return ef.SoftwarePlatform(base.root_key, base.root_der, key, att.public_bytes(serialization.Encoding.DER))


def _p384_key() -> ef.SoftwarePlatform:
    base = ef.default_platform()
    cert = x509.load_der_x509_certificate(base.root_der)
    key, att = ef.make_attestation_cert(base.root_key, cert, curve=ec.SECP384R1())
    return ef.SoftwarePlatform(base.root_key, base.root_der, key, att.public_bytes(serialization.Encoding.DER))


def _sha384_issued() -> ef.SoftwarePlatform:
    base = ef.default_platform()
    cert = x509.load_der_x509_certificate(base.root_der)
    key, att = ef.make_attestation_cert(base.root_key, cert, hash_algorithm=hashes.SHA384())
    return ef.SoftwarePlatform(base.root_key, base.root_der, key, att.public_bytes(serialization.Encoding.DER))


CASES: list[tuple[str, Any, Any, dict[str, Any], Status]] = [
    # (name, evidence options (or a callable returning them), policy overrides, verify kwargs, status)
    ("sgx platform", {"header_platform": 2, "platform_evidence": b"oe"}, {}, {}, Status.UNSUPPORTED_PLATFORM),
    (
        "sgx before software check",
        {"header_platform": 2, "platform_evidence": b""},
        {"allow_software": False},
        {},
        Status.UNSUPPORTED_PLATFORM,
    ),
    # Only the outer framing of SGX evidence is checkable: a software report inside is opaque.
    ("sgx header over software report", {"header_platform": 2}, {}, {}, Status.UNSUPPORTED_PLATFORM),
    ("software not allowed", {}, {"allow_software": False}, {}, Status.PLATFORM_NOT_ALLOWED),
    ("no trusted roots", {}, {"trusted_roots": ()}, {}, Status.UNTRUSTED_ROOT),
    ("other root", lambda: {"platform": ef.make_platform()}, {}, {}, Status.UNTRUSTED_ROOT),
    ("expired certificate", lambda: {"platform": _expired()}, "own root", {}, Status.CERTIFICATE_INVALID),
    ("not yet valid", lambda: {"platform": _not_yet_valid()}, "own root", {}, Status.CERTIFICATE_INVALID),
    (
        "expired by now=",
        {},
        {},
        {"now": datetime.now(UTC) + timedelta(days=365 * 21)},
        Status.CERTIFICATE_INVALID,
    ),
    (
        "before validity by now=",
        {},
        {},
        {"now": datetime.now(UTC) - timedelta(days=1)},
        Status.CERTIFICATE_INVALID,
    ),
    ("other issuer", lambda: {"platform": ef.other_issuer_platform()}, {}, {}, Status.CERTIFICATE_INVALID),
    ("issuer name", lambda: {"platform": _foreign_issuer_name()}, {}, {}, Status.CERTIFICATE_INVALID),
    (
        "P-384 attestation key",
        lambda: {"platform": _p384_key(), "signature": bytes(64)},
        {},
        {},
        Status.CERTIFICATE_INVALID,
    ),
    (
        "outer and TBS algorithms differ",
        lambda: {"attestation_der": ef.mismatched_algorithm_attestation_der()},
        {},
        {},
        Status.CERTIFICATE_INVALID,
    ),
    (
        "signature BIT STRING with unused bits",
        lambda: {"attestation_der": ef.padded_signature_attestation_der()},
        {},
        {},
        Status.CERTIFICATE_INVALID,
    ),
    ("garbage certificate", {"attestation_der": b"\x30\x03abc"}, {}, {}, Status.CERTIFICATE_INVALID),
    ("empty certificate", {"attestation_der": b""}, {}, {}, Status.CERTIFICATE_INVALID),
    # The doc asks nothing of the attestation cert's extensions, so the root itself passes step 4.
    (
        "root as attestation cert",
        lambda: {"attestation_der": root()},
        {},
        {},
        Status.REPORT_SIGNATURE_INVALID,
    ),
    (
        "wrong report signer",
        lambda: {"report_signing_key": ec.generate_private_key(ec.SECP256R1())},
        {},
        {},
        Status.REPORT_SIGNATURE_INVALID,
    ),
    ("zero signature", {"signature": bytes(64)}, {}, {}, Status.REPORT_SIGNATURE_INVALID),
    ("all-ones signature", {"signature": b"\xff" * 64}, {}, {}, Status.REPORT_SIGNATURE_INVALID),
    (
        "claims changed after signing",
        {"signed_claims": ef.make_claims(OTHER, ef.SIGNING_PUBLIC_KEY, b"")},
        {},
        {},
        Status.CLAIMS_MISMATCH,
    ),
    (
        "report data tail not zero",
        {"report_data": claims_digest(ef.make_claims(ef.HPKE_PUBLIC_KEY, ef.SIGNING_PUBLIC_KEY, b"")) + b"\1" * 32},
        {},
        {},
        Status.CLAIMS_MISMATCH,
    ),
    ("wrong nonce", {"nonce": b"abc"}, {}, {"nonce": b"abd"}, Status.NONCE_MISMATCH),
    ("nonce expected, none claimed", {}, {}, {"nonce": b"abc"}, Status.NONCE_MISMATCH),
    ("empty nonce expected", {"nonce": b"abc"}, {}, {"nonce": b""}, Status.NONCE_MISMATCH),
    ("wrong mrenclave", {}, {"mrenclave": OTHER}, {}, Status.MRENCLAVE_MISMATCH),
    ("wrong signer", {"mrsigner": OTHER}, {}, {}, Status.MRSIGNER_MISMATCH),
    ("wrong signer, signer policy", {"mrsigner": OTHER}, {"mrenclave": None}, {}, Status.MRSIGNER_MISMATCH),
    ("wrong product", {"product_id": 8}, {}, {}, Status.PRODUCT_ID_MISMATCH),
    ("low version", {"security_version": 2}, {}, {}, Status.SECURITY_VERSION_TOO_LOW),
    ("debug not allowed", {"debug": True}, {}, {}, Status.DEBUG_NOT_ALLOWED),
    # Several defects at once: the earliest check in the documented order wins.
    (
        "root before platform",
        lambda: {"platform": ef.make_platform()},
        {"allow_software": False},
        {},
        Status.PLATFORM_NOT_ALLOWED,
    ),
    (
        "cert before signature",
        lambda: {"platform": _expired(), "signature": bytes(64)},
        "own root",
        {},
        Status.CERTIFICATE_INVALID,
    ),
    (
        "signature before claims",
        {"signature": bytes(64), "report_data": bytes(64)},
        {},
        {},
        Status.REPORT_SIGNATURE_INVALID,
    ),
    ("claims before nonce", {"report_data": bytes(64)}, {}, {"nonce": b"x"}, Status.CLAIMS_MISMATCH),
    (
        "nonce before identity",
        {"mrenclave": OTHER, "debug": True},
        {},
        {"nonce": b"x"},
        Status.NONCE_MISMATCH,
    ),
    ("mrenclave before mrsigner", {"mrenclave": OTHER, "mrsigner": OTHER}, {}, {}, Status.MRENCLAVE_MISMATCH),
    ("mrsigner before product", {"mrsigner": OTHER, "product_id": 1}, {}, {}, Status.MRSIGNER_MISMATCH),
    ("product before version", {"product_id": 1, "security_version": 0}, {}, {}, Status.PRODUCT_ID_MISMATCH),
    ("version before debug", {"security_version": 0, "debug": True}, {}, {}, Status.SECURITY_VERSION_TOO_LOW),
]


@pytest.mark.parametrize(("name", "options", "overrides", "kwargs", "status"), CASES, ids=[c[0] for c in CASES])
def test_refusals(name: str, options: Any, overrides: Any, kwargs: dict[str, Any], status: Status) -> None:
    options = options() if callable(options) else options
    evidence, root_der = ef.make_evidence(**options)
    if overrides == "own root":
        overrides = {"trusted_roots": (root_der,)}
    error = refused(evidence, policy(**overrides), **kwargs)
    assert error.status == status, str(error)
    assert isinstance(error, EvidenceFormatError) == (error.status == Status.EVIDENCE_MALFORMED)


def test_messages_say_what_was_wrong() -> None:
    evidence, _ = ef.make_evidence()
    message = str(refused(evidence, policy(mrenclave=OTHER)))
    assert message == f"mrenclave mismatch: evidence has {ef.MRENCLAVE[:4].hex()}…, policy expects eeeeeeee…"
    assert "below the policy's minimum 9" in str(refused(evidence, policy(min_security_version=9)))
    assert "validity" in str(refused(evidence, policy(), now=datetime.now(UTC) + timedelta(days=365 * 30)))


# --------------------------------------------------------------------------- framing


FORMAT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("header magic", {"header_magic": b"MTEW"}),
    ("header version", {"header_version": 2}),
    ("header reserved", {"header_reserved": 1}),
    ("unknown platform", {"header_platform": 3}),
    ("platform zero", {"header_platform": 0}),
    ("header software, report sgx", {"report_platform": 2}),
    ("report magic", {"report_magic": b"MTRQ"}),
    ("report version", {"report_version": 0}),
    ("report flag bits", {"flags": 0x03}),
    ("report high flag", {"flags": 0x80}),
    ("nonce too long", {"nonce": bytes(65)}),
    ("attestation cert too long", {"attestation_der": bytes(4097)}),
    ("root cert too long", {"root_der": bytes(4097)}),
    ("trailing byte", {"trailing": b"\0"}),
]


@pytest.mark.parametrize(("name", "options"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_malformed(name: str, options: dict[str, Any]) -> None:
    evidence, _ = ef.make_evidence(**options)
    with pytest.raises(EvidenceFormatError) as info:
        verify_evidence(evidence, policy(allow_software=False, trusted_roots=()))
    assert info.value.status == Status.EVIDENCE_MALFORMED
    assert isinstance(info.value, FormatError | AttestationError)


def test_every_truncation_is_malformed() -> None:
    evidence, _ = ef.make_evidence(nonce=b"nonce")
    for length in range(len(evidence)):
        with pytest.raises(EvidenceFormatError) as info:
            verify_evidence(evidence[:length], policy())
        assert info.value.status == Status.EVIDENCE_MALFORMED


def test_trailing_byte_is_malformed() -> None:
    evidence, _ = ef.make_evidence()
    error = refused(evidence + b"\0")
    assert error.status == Status.EVIDENCE_MALFORMED and "trailing" in str(error)
    # A byte after the root certificate, inside the platform evidence's declared length.
    parsed = parse_evidence(evidence)
    platform_evidence = evidence[8 + len(parsed.claims) + 4 :] + b"\0"
    inner, _ = ef.make_evidence(platform_evidence=platform_evidence)
    error = refused(inner)
    assert error.status == Status.EVIDENCE_MALFORMED
    assert str(error) == f"software platform evidence: 1 trailing byte(s) at offset {len(inner) - 1}"
    assert "report: bad magic at offset 77" in str(refused(ef.make_evidence(report_magic=b"MTRQ").evidence))


def test_oversized_evidence_is_malformed() -> None:
    evidence, _ = ef.make_evidence()
    big = evidence + bytes(MAX_EVIDENCE_SIZE + 1 - len(evidence))
    error = refused(big)
    assert error.status == Status.EVIDENCE_MALFORMED and "exceeds" in str(error)
    # At exactly the limit the size is fine and the framing is what fails.
    assert "exceeds" not in str(refused(big[:-1]))


def test_every_single_byte_change_is_refused() -> None:
    evidence, _ = ef.make_evidence(nonce=b"nonce", debug=True)
    pol = policy(allow_debug=True)
    verify_evidence(evidence, pol, nonce=b"nonce")
    statuses: set[Status] = set()
    for offset in range(len(evidence)):
        changed = bytearray(evidence)
        changed[offset] ^= 0x01
        with pytest.raises(AttestationError) as info:
            verify_evidence(bytes(changed), pol, nonce=b"nonce")
        statuses.add(info.value.status)
    expected = {
        Status.EVIDENCE_MALFORMED,
        Status.UNTRUSTED_ROOT,
        Status.CERTIFICATE_INVALID,
        Status.REPORT_SIGNATURE_INVALID,
        Status.CLAIMS_MISMATCH,
    }
    assert statuses == expected


def test_cryptography_sees_the_mismatched_algorithm_certificate_as_well_formed() -> None:
    # Guards the CERTIFICATE_INVALID case above: the refusal must come from the algorithm check.
    cert = x509.load_der_x509_certificate(ef.mismatched_algorithm_attestation_der())
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256


def test_cryptography_sees_the_padded_signature_certificate_as_well_formed() -> None:
    # Guards the case above: cryptography alone would accept it (OpenSSL's X509_verify refuses it).
    platform = ef.default_platform()
    cert = x509.load_der_x509_certificate(ef.padded_signature_attestation_der())
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(platform.root_der))


def test_sha384_issued_certificate_is_accepted() -> None:
    # The doc fixes the report's hash (SHA-256), not the certificate's; consistent algorithms pass.
    evidence, _ = ef.make_evidence(platform=_sha384_issued())
    verify_evidence(evidence, policy())


# --------------------------------------------------------------------------- arguments


def test_verifier_arguments_are_checked() -> None:
    evidence, _ = ef.make_evidence()
    with pytest.raises(InvalidArgumentError, match="at most 64"):
        verify_evidence(evidence, policy(), nonce=bytes(65))
    with pytest.raises(InvalidArgumentError, match="timezone"):
        verify_evidence(evidence, policy(), now=datetime.now())
    with pytest.raises(InvalidArgumentError):
        verify_evidence(evidence, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        verify_evidence("evidence", policy())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"mrenclave": bytes(31)}, "mrenclave must be 32 bytes"),
        ({"mrsigner": bytes(33), "product_id": 1}, "mrsigner must be 32 bytes"),
        ({"mrenclave": "ab" * 32}, "mrenclave must be bytes"),
        ({}, "must name mrenclave"),
        ({"min_security_version": 1}, "must name mrenclave"),
        ({"mrsigner": OTHER}, "mrsigner and product_id go together"),
        ({"product_id": 1}, "product_id needs mrsigner"),
        ({"mrenclave": OTHER, "product_id": 1}, "product_id needs mrsigner"),
        ({"mrsigner": OTHER, "product_id": 65536}, "product_id must be in 0..65535"),
        ({"mrsigner": OTHER, "product_id": -1}, "product_id must be in"),
        ({"mrsigner": OTHER, "product_id": True}, "product_id must be an int"),
        ({"mrenclave": OTHER, "min_security_version": 65536}, "min_security_version"),
        ({"mrenclave": OTHER, "allow_debug": 1}, "allow_debug must be a bool"),
        ({"mrenclave": OTHER, "trusted_roots": [b"not a certificate"]}, r"trusted_roots\[0\]"),
        ({"mrenclave": OTHER, "trusted_roots": [b"-----BEGIN CERTIFICATE-----\nxx"]}, "not a valid"),
        ({"mrenclave": OTHER, "trusted_roots": [42]}, "must be DER or PEM"),
        ({"mrenclave": OTHER, "trusted_roots": b"\x30\x00"}, "iterable of certificates"),
        ({"mrenclave": OTHER, "trusted_roots": None}, "iterable of certificates"),
    ],
)
def test_policy_validation(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        AttestationPolicy(**fields)


def test_policy_roots_accept_der_pem_and_certificates() -> None:
    cert = x509.load_der_x509_certificate(root())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    roots = (r for r in [root(), pem, cert])
    pol = AttestationPolicy(mrenclave=bytearray(OTHER), trusted_roots=roots)  # type: ignore[arg-type]
    assert pol.trusted_roots == (root(), root(), root())
    assert pol.mrenclave == OTHER and type(pol.mrenclave) is bytes
    with pytest.raises(InvalidArgumentError, match="2 PEM certificates"):
        AttestationPolicy(mrenclave=OTHER, trusted_roots=(pem + pem,))
    with pytest.raises(AttributeError):
        pol.allow_debug = True  # type: ignore[misc]


# --------------------------------------------------------------------------- Reader


def test_reader_errors_name_field_and_offset() -> None:
    r = Reader(bytes(76), "evidence", EvidenceFormatError, Status.EVIDENCE_MALFORMED)
    r.take(73, "claims")
    with pytest.raises(EvidenceFormatError) as info:
        r.take(12, "nonce")
    assert str(info.value) == "evidence: truncated at offset 73 reading nonce (need 12 bytes, 3 left)"
    assert info.value.status == Status.EVIDENCE_MALFORMED
    with pytest.raises(EvidenceFormatError, match="3 trailing byte"):
        r.expect_end()


def test_reader_integers_are_little_endian() -> None:
    data = struct.pack("<BHIQ", 0xAB, 0x1234, 0xDEADBEEF, 2**63 + 5) + b"xy"
    r = Reader(memoryview(data), "t")
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (0xAB, 0x1234, 0xDEADBEEF, 2**63 + 5)
    assert r.remaining == 2
    rest = r.take(2)
    assert rest == b"xy" and type(rest) is bytes
    r.expect_end()
    with pytest.raises(FormatError, match="t: truncated at offset 17 reading u8"):
        r.u8()
