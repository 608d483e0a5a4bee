"""Evidence parsing and verification (pure Python; see "Evidence" in ``docs/formats.md``).

The checks run in the documented "Verification order" and stop at the first
failure; the C++ verifier follows the same order, so both report the same
status for the same evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mesatee.core.binary import Reader
from mesatee.errors import AttestationError, EvidenceFormatError, InvalidArgumentError, Status

__all__ = [
    "CLAIMS_OFFSET",
    "EVIDENCE_HEADER_SIZE",
    "EVIDENCE_MAGIC",
    "EVIDENCE_VERSION",
    "KEY_SIZE",
    "MAX_CERT_SIZE",
    "MAX_EVIDENCE_SIZE",
    "MAX_NONCE_SIZE",
    "MEASUREMENT_SIZE",
    "PLATFORM_SGX",
    "PLATFORM_SOFTWARE",
    "REPORT_DATA_SIZE",
    "REPORT_FLAG_DEBUG",
    "REPORT_MAGIC",
    "REPORT_SIZE",
    "REPORT_VERSION",
    "SIGNATURE_SIZE",
    "AttestationPolicy",
    "ParsedEvidence",
    "VerifiedClaims",
    "claims_digest",
    "parse_evidence",
    "verify_evidence",
]

EVIDENCE_MAGIC = b"MTEV"
EVIDENCE_VERSION = 1
EVIDENCE_HEADER_SIZE = 8
CLAIMS_OFFSET = EVIDENCE_HEADER_SIZE
PLATFORM_SOFTWARE = 1
PLATFORM_SGX = 2
KEY_SIZE = 32
MAX_NONCE_SIZE = 64
MAX_EVIDENCE_SIZE = 16 * 1024
MAX_CERT_SIZE = 4 * 1024

REPORT_MAGIC = b"MTRP"
REPORT_VERSION = 1
REPORT_SIZE = 140
REPORT_FLAG_DEBUG = 0x01
MEASUREMENT_SIZE = 32
REPORT_DATA_SIZE = 64
SIGNATURE_SIZE = 64

_U16_MAX = 0xFFFF
_PLATFORM_NAMES = {PLATFORM_SOFTWARE: "software", PLATFORM_SGX: "sgx"}


def _short(value: bytes) -> str:
    """A short, non-secret rendering of a measurement for error messages."""
    return value[:4].hex() + "…"


def _fail(message: str, status: Status) -> AttestationError:
    return AttestationError(message, status)


# --------------------------------------------------------------------------- policy


def _u16(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _U16_MAX:
        raise InvalidArgumentError(f"{name} must be in 0..{_U16_MAX}, got {value}")
    return value


def _measurement(name: str, value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidArgumentError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != MEASUREMENT_SIZE:
        raise InvalidArgumentError(f"{name} must be {MEASUREMENT_SIZE} bytes, got {len(value)}")
    return value


def _root_der(index: int, root: object) -> bytes:
    if isinstance(root, x509.Certificate):
        return root.public_bytes(serialization.Encoding.DER)
    if not isinstance(root, bytes | bytearray | memoryview):
        raise InvalidArgumentError(
            f"trusted_roots[{index}] must be DER or PEM bytes or an x509.Certificate, not {type(root).__name__}"
        )
    data = bytes(root)
    try:
        if not data.lstrip().startswith(b"-----BEGIN"):
            x509.load_der_x509_certificate(data)
            return data
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InvalidArgumentError(f"trusted_roots[{index}] is not a valid certificate: {exc}") from None
    if len(certs) != 1:
        raise InvalidArgumentError(f"trusted_roots[{index}] holds {len(certs)} PEM certificates; pass one per item")
    return certs[0].public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class AttestationPolicy:
    """What a verifier requires of an enclave's evidence.

    Name ``mrenclave`` (one exact build), or ``mrsigner`` with ``product_id``
    (any build of that product by that signer), or all three. Roots are kept
    as DER bytes and compared byte for byte with the evidence's root.
    """

    mrenclave: bytes | None = None
    mrsigner: bytes | None = None
    product_id: int | None = None
    min_security_version: int = 0
    allow_debug: bool = False
    allow_software: bool = False
    trusted_roots: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "mrenclave", _measurement("mrenclave", self.mrenclave))
        set_(self, "mrsigner", _measurement("mrsigner", self.mrsigner))
        if self.product_id is not None:
            _u16("product_id", self.product_id)
        _u16("min_security_version", self.min_security_version)
        if (self.mrsigner is None) != (self.product_id is None):
            raise InvalidArgumentError(
                "mrsigner and product_id go together: a signer's key signs many products"
                if self.product_id is None
                else "product_id needs mrsigner: product ids are only unique per signer"
            )
        if self.mrenclave is None and self.mrsigner is None:
            raise InvalidArgumentError("policy must name mrenclave, or mrsigner with product_id")
        for name in ("allow_debug", "allow_software"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name} must be a bool")
        roots = self.trusted_roots
        if isinstance(roots, bytes | bytearray | memoryview | str | x509.Certificate) or not isinstance(
            roots, Iterable
        ):
            raise InvalidArgumentError("trusted_roots must be an iterable of certificates (e.g. a tuple)")
        set_(self, "trusted_roots", tuple(_root_der(i, root) for i, root in enumerate(roots)))


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class VerifiedClaims:
    """What verified evidence proves about the enclave that produced it."""

    platform: str
    mrenclave: bytes
    mrsigner: bytes
    product_id: int
    security_version: int
    debug: bool
    hpke_public_key: bytes
    signing_public_key: bytes
    nonce: bytes


@dataclass(frozen=True)
class ParsedEvidence:
    """The fields of well-framed software-platform evidence (nothing here is verified yet)."""

    platform: int
    hpke_public_key: bytes
    signing_public_key: bytes
    nonce: bytes
    mrenclave: bytes
    mrsigner: bytes
    product_id: int
    security_version: int
    debug: bool
    report_data: bytes
    signature: bytes
    attestation_cert: bytes
    root_cert: bytes
    report: bytes
    claims: bytes


def claims_digest(claims: bytes) -> bytes:
    return hashlib.sha256(claims).digest()


def _reader(data: bytes, what: str, base: int = 0) -> Reader:
    return Reader(data, what, EvidenceFormatError, Status.EVIDENCE_MALFORMED, base=base)


def parse_evidence(evidence: bytes | bytearray | memoryview) -> ParsedEvidence:
    """Check the framing of evidence (verification step 1) and return its fields.

    Raises ``EvidenceFormatError`` for any framing defect. SGX evidence is
    framed (header, claims, platform evidence length) but its content cannot
    be parsed in this build, so it raises ``UNSUPPORTED_PLATFORM`` (step 2).
    """
    if not isinstance(evidence, bytes | bytearray | memoryview):
        raise InvalidArgumentError(f"evidence must be bytes, not {type(evidence).__name__}")
    evidence = bytes(evidence)
    if len(evidence) > MAX_EVIDENCE_SIZE:
        raise EvidenceFormatError(
            f"evidence: {len(evidence)} bytes exceeds the limit of {MAX_EVIDENCE_SIZE}",
            Status.EVIDENCE_MALFORMED,
        )
    r = _reader(evidence, "evidence")
    r.expect(EVIDENCE_MAGIC, "magic")
    version = r.u16("version")
    if version != EVIDENCE_VERSION:
        r.fail(f"unsupported version {version} at offset {r.offset - 2} (expected {EVIDENCE_VERSION})")
    platform = r.u8("platform")
    if platform not in _PLATFORM_NAMES:
        r.fail(f"unknown platform {platform} at offset {r.offset - 1}")
    r.expect(b"\0", "reserved byte")

    hpke_public_key = r.take(KEY_SIZE, "hpke_public_key")
    signing_public_key = r.take(KEY_SIZE, "signing_public_key")
    nonce_size = r.u8("nonce length")
    if nonce_size > MAX_NONCE_SIZE:
        r.fail(f"nonce length {nonce_size} at offset {r.offset - 1} exceeds {MAX_NONCE_SIZE}")
    nonce = r.take(nonce_size, "nonce")
    claims = evidence[CLAIMS_OFFSET : r.offset]

    platform_size = r.u32("platform evidence length")
    platform_offset = r.offset
    platform_evidence = r.take(platform_size, "platform evidence")
    r.expect_end()

    if platform == PLATFORM_SGX:
        raise _fail("SGX evidence cannot be verified in this build", Status.UNSUPPORTED_PLATFORM)

    # Offsets in errors below count from the start of the evidence.
    p = _reader(platform_evidence, "software platform evidence", platform_offset)
    report = p.take(REPORT_SIZE, "report")
    signature = p.take(SIGNATURE_SIZE, "signature")
    attestation_cert = _take_cert(p, "attestation certificate")
    root_cert = _take_cert(p, "root certificate")
    p.expect_end()

    q = _reader(report, "report", platform_offset)
    q.expect(REPORT_MAGIC, "magic")
    report_version = q.u16("version")
    if report_version != REPORT_VERSION:
        q.fail(f"unsupported version {report_version} at offset {q.offset - 2} (expected {REPORT_VERSION})")
    report_platform = q.u8("platform")
    if report_platform != platform:
        q.fail(f"platform {report_platform} at offset {q.offset - 1} differs from the header's {platform}")
    flags = q.u8("flags")
    if flags & ~REPORT_FLAG_DEBUG:
        q.fail(f"reserved flag bits set at offset {q.offset - 1}: {flags:#04x}")
    mrenclave = q.take(MEASUREMENT_SIZE, "mrenclave")
    mrsigner = q.take(MEASUREMENT_SIZE, "mrsigner")
    product_id = q.u16("product_id")
    security_version = q.u16("security_version")
    report_data = q.take(REPORT_DATA_SIZE, "report data")
    q.expect_end()

    return ParsedEvidence(
        platform=platform,
        hpke_public_key=hpke_public_key,
        signing_public_key=signing_public_key,
        nonce=nonce,
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        product_id=product_id,
        security_version=security_version,
        debug=bool(flags & REPORT_FLAG_DEBUG),
        report_data=report_data,
        signature=signature,
        attestation_cert=attestation_cert,
        root_cert=root_cert,
        report=report,
        claims=claims,
    )


def _take_cert(r: Reader, field: str) -> bytes:
    size = r.u16(f"{field} length")
    if size > MAX_CERT_SIZE:
        r.fail(f"{field} length {size} at offset {r.offset - 2} exceeds {MAX_CERT_SIZE}")
    return r.take(size, field)


# --------------------------------------------------------------------------- verification


def _check_attestation_cert(der: bytes, root_der: bytes, now: datetime) -> ec.EllipticCurvePublicKey:
    """Step 4: the attestation certificate, issued directly by the root; returns its P-256 key."""

    def invalid(reason: str) -> AttestationError:
        return _fail(f"attestation certificate invalid: {reason}", Status.CERTIFICATE_INVALID)

    # Untrusted DER: any exception of the parser (ValueError, InvalidVersion, ...) is a refusal.
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:
        raise invalid(f"does not parse ({exc})") from None
    # The root matched a policy root byte for byte, and policy roots were parsed when the policy was made.
    root = x509.load_der_x509_certificate(root_der)
    try:
        # Checks the issuer name against the root's subject, the signature under the root's key, and
        # that the outer signatureAlgorithm equals the TBS one (tested in test_attestation_python).
        cert.verify_directly_issued_by(root)
    except InvalidSignature:
        raise invalid("its signature is not the root's") from None
    except Exception as exc:
        raise invalid(f"not issued by the root ({exc})") from None
    # The signature BIT STRING is the certificate's last element: its contents are the unused-bits
    # count then the signature. cryptography ignores a nonzero count, which OpenSSL (the C++ verifier)
    # refuses; refuse it here too, so the certificate has one encoding and both verifiers agree.
    if der[len(der) - len(cert.signature) - 1] != 0:
        raise invalid("its signature BIT STRING has unused bits")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise invalid(
            f"outside its validity period {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()} (now {now.isoformat()})"
        )
    try:
        key = cert.public_key()
    except Exception as exc:
        raise invalid(f"unreadable public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise invalid("its key is not an EC P-256 key")
    return key


def verify_evidence(
    evidence: bytes | bytearray | memoryview,
    policy: AttestationPolicy,
    *,
    nonce: bytes | None = None,
    now: datetime | None = None,
) -> VerifiedClaims:
    """Verify ``evidence`` against ``policy``; return the claims it proves.

    ``nonce``, when given (even empty), must equal the nonce in the evidence.
    ``now`` (timezone-aware; default: the current time) is checked against the
    attestation certificate's validity period. Raises ``AttestationError``
    (``EvidenceFormatError`` for framing) whose ``status`` names the first
    failed check, in the order of ``docs/formats.md``.
    """
    if not isinstance(policy, AttestationPolicy):
        raise InvalidArgumentError(f"policy must be an AttestationPolicy, not {type(policy).__name__}")
    if nonce is not None:
        if not isinstance(nonce, bytes | bytearray | memoryview):
            raise InvalidArgumentError(f"nonce must be bytes, not {type(nonce).__name__}")
        nonce = bytes(nonce)
        if len(nonce) > MAX_NONCE_SIZE:
            raise InvalidArgumentError(f"nonce must be at most {MAX_NONCE_SIZE} bytes, got {len(nonce)}")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise InvalidArgumentError("now must be a timezone-aware datetime")

    # 1. framing (and 2., for SGX)
    ev = parse_evidence(evidence)
    # 2. platform
    if not policy.allow_software:
        raise _fail("software-platform evidence is not allowed by the policy", Status.PLATFORM_NOT_ALLOWED)
    # 3. root
    if not policy.trusted_roots:
        raise _fail("the policy trusts no root certificate", Status.UNTRUSTED_ROOT)
    if ev.root_cert not in policy.trusted_roots:
        raise _fail("the evidence's root certificate is not one of the policy's", Status.UNTRUSTED_ROOT)
    # 4. attestation certificate
    key = _check_attestation_cert(ev.attestation_cert, ev.root_cert, now)
    # 5. report signature
    r = int.from_bytes(ev.signature[:32], "big")
    s = int.from_bytes(ev.signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), ev.report, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise _fail(
            "report signature does not verify under the attestation key", Status.REPORT_SIGNATURE_INVALID
        ) from None
    # 6. claims bound by the report
    if ev.report_data != claims_digest(ev.claims) + bytes(REPORT_DATA_SIZE - 32):
        raise _fail(
            "report data is not the digest of the claims: the keys or nonce were changed",
            Status.CLAIMS_MISMATCH,
        )
    # 7. nonce
    if nonce is not None and nonce != ev.nonce:
        raise _fail(
            f"nonce mismatch: evidence has {len(ev.nonce)} bytes {_short(ev.nonce)}, "
            f"expected {len(nonce)} bytes {_short(nonce)}",
            Status.NONCE_MISMATCH,
        )
    # 8. identity and policy
    for name, status in (("mrenclave", Status.MRENCLAVE_MISMATCH), ("mrsigner", Status.MRSIGNER_MISMATCH)):
        expected, actual = getattr(policy, name), getattr(ev, name)
        if expected is not None and actual != expected:
            raise _fail(f"{name} mismatch: evidence has {_short(actual)}, policy expects {_short(expected)}", status)
    if policy.product_id is not None and ev.product_id != policy.product_id:
        raise _fail(
            f"product_id mismatch: evidence has {ev.product_id}, policy expects {policy.product_id}",
            Status.PRODUCT_ID_MISMATCH,
        )
    if ev.security_version < policy.min_security_version:
        raise _fail(
            f"security version {ev.security_version} is below the policy's minimum {policy.min_security_version}",
            Status.SECURITY_VERSION_TOO_LOW,
        )
    if ev.debug and not policy.allow_debug:
        raise _fail("the enclave runs in debug mode and the policy does not allow debug", Status.DEBUG_NOT_ALLOWED)

    return VerifiedClaims(
        platform=_PLATFORM_NAMES[ev.platform],
        mrenclave=ev.mrenclave,
        mrsigner=ev.mrsigner,
        product_id=ev.product_id,
        security_version=ev.security_version,
        debug=ev.debug,
        hpke_public_key=ev.hpke_public_key,
        signing_public_key=ev.signing_public_key,
        nonce=ev.nonce,
    )
