"""Builds software-platform evidence exactly as ``docs/formats.md`` describes, with every field variable.

Plain functions returning bytes, so the same evidence can feed the Python and
the C++ verifier:

    evidence, root_der = make_evidence(nonce=b"n", debug=True)
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

MRENCLAVE = bytes(range(0x10, 0x30))
MRSIGNER = bytes(range(0x40, 0x60))
PRODUCT_ID = 7
SECURITY_VERSION = 3
HPKE_PUBLIC_KEY = bytes([0xA1]) * 32
SIGNING_PUBLIC_KEY = bytes([0xB2]) * 32

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SoftwarePlatform:
    """A root CA and the attestation key and certificate it issued."""

    root_key: Key
    root_der: bytes
    attestation_key: Key
    attestation_der: bytes


class Evidence(NamedTuple):
    evidence: bytes
    root_der: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_root(common_name: str = "mesatee test root CA") -> tuple[Key, x509.Certificate]:
    """A self-signed P-256 root CA (CA:TRUE critical, keyCertSign)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_attestation_cert(
    root_key: Key,
    root_cert: x509.Certificate,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    curve: ec.EllipticCurve | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_name: x509.Name | None = None,
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> tuple[Key, x509.Certificate]:
    """An attestation certificate (CA:FALSE) issued by ``root_key``; P-256 unless ``curve`` says otherwise."""
    if key is None:
        key = ec.generate_private_key(curve or ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mesatee test attestation key"))
        .issuer_name(issuer_name or root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hash_algorithm or hashes.SHA256())
    )
    return key, cert


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def make_platform(**attestation_options: object) -> SoftwarePlatform:
    """A fresh platform; options go to ``make_attestation_cert`` (e.g. ``not_after=`` for an expired cert)."""
    root_key, root_cert = make_root()
    key, cert = make_attestation_cert(root_key, root_cert, **attestation_options)  # type: ignore[arg-type]
    return SoftwarePlatform(root_key, _der(root_cert), key, _der(cert))


@functools.cache
def default_platform() -> SoftwarePlatform:
    """One platform shared by all tests, so its root can go in a policy."""
    return make_platform()


def other_issuer_platform() -> SoftwarePlatform:
    """The default root, but an attestation certificate issued by another CA of the same name."""
    base = default_platform()
    other_key, _ = make_root()
    root_cert = x509.load_der_x509_certificate(base.root_der)
    key, cert = make_attestation_cert(other_key, root_cert)
    return SoftwarePlatform(base.root_key, base.root_der, key, _der(cert))


def make_report(
    *,
    report_data: bytes,
    mrenclave: bytes = MRENCLAVE,
    mrsigner: bytes = MRSIGNER,
    product_id: int = PRODUCT_ID,
    security_version: int = SECURITY_VERSION,
    debug: bool = False,
    flags: int | None = None,
    platform: int = 1,
    magic: bytes = b"MTRP",
    version: int = 1,
) -> bytes:
    """The 140-byte report."""
    flags = int(debug) if flags is None else flags
    return (
        magic
        + struct.pack("<HBB", version, platform, flags)
        + mrenclave
        + mrsigner
        + struct.pack("<HH", product_id, security_version)
        + report_data
    )


def sign_report(key: Key, report: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 as raw big-endian r ‖ s."""
    r, s = decode_dss_signature(key.sign(report, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def make_claims(hpke_public_key: bytes, signing_public_key: bytes, nonce: bytes) -> bytes:
    return hpke_public_key + signing_public_key + bytes([len(nonce)]) + nonce


def make_evidence(
    *,
    platform: SoftwarePlatform | None = None,
    mrenclave: bytes = MRENCLAVE,
    mrsigner: bytes = MRSIGNER,
    product_id: int = PRODUCT_ID,
    security_version: int = SECURITY_VERSION,
    debug: bool = False,
    flags: int | None = None,
    nonce: bytes = b"",
    hpke_public_key: bytes = HPKE_PUBLIC_KEY,
    signing_public_key: bytes = SIGNING_PUBLIC_KEY,
    report_data: bytes | None = None,
    signed_claims: bytes | None = None,
    report_signing_key: Key | None = None,
    signature: bytes | None = None,
    attestation_der: bytes | None = None,
    root_der: bytes | None = None,
    header_magic: bytes = b"MTEV",
    header_version: int = 1,
    header_platform: int = 1,
    header_reserved: int = 0,
    report_magic: bytes = b"MTRP",
    report_version: int = 1,
    report_platform: int = 1,
    platform_evidence: bytes | None = None,
    trailing: bytes = b"",
) -> Evidence:
    """Software-platform evidence, valid unless an option says otherwise.

    ``signed_claims``: the claims whose digest goes in the report (default: the
    evidence's own claims; pass other claims to model claims changed after
    signing). ``report_signing_key``: sign the report with a key other than the
    attestation key. ``platform_evidence`` replaces everything after the claims'
    length prefix (e.g. for SGX). Returns ``(evidence, root_der)``, the root being
    the platform's (trust it in the policy), even when ``root_der`` overrides the
    one embedded in the evidence.
    """
    platform = platform or default_platform()
    claims = make_claims(hpke_public_key, signing_public_key, nonce)
    if report_data is None:
        report_data = hashlib.sha256(claims if signed_claims is None else signed_claims).digest() + bytes(32)
    if platform_evidence is None:
        report = make_report(
            report_data=report_data,
            mrenclave=mrenclave,
            mrsigner=mrsigner,
            product_id=product_id,
            security_version=security_version,
            debug=debug,
            flags=flags,
            platform=report_platform,
            magic=report_magic,
            version=report_version,
        )
        if signature is None:
            signature = sign_report(report_signing_key or platform.attestation_key, report)
        att = platform.attestation_der if attestation_der is None else attestation_der
        root = platform.root_der if root_der is None else root_der
        platform_evidence = report + signature + struct.pack("<H", len(att)) + att + struct.pack("<H", len(root)) + root
    header = header_magic + struct.pack("<HBB", header_version, header_platform, header_reserved)
    evidence = header + claims + struct.pack("<I", len(platform_evidence)) + platform_evidence + trailing
    return Evidence(evidence, platform.root_der)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def mismatched_algorithm_attestation_der(platform: SoftwarePlatform | None = None) -> bytes:
    """The platform's attestation certificate, re-signed by the root, whose TBS names
    ecdsa-with-SHA384 while the outer signatureAlgorithm says ecdsa-with-SHA256."""
    platform = platform or default_platform()
    tbs = x509.load_der_x509_certificate(platform.attestation_der).tbs_certificate_bytes
    sha256_oid = bytes.fromhex("06082a8648ce3d040302")
    sha384_oid = bytes.fromhex("06082a8648ce3d040303")
    assert tbs.count(sha256_oid) == 1
    tbs = tbs.replace(sha256_oid, sha384_oid)
    signature = platform.root_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + _tlv(0x30, sha256_oid) + _tlv(0x03, b"\0" + signature))


def padded_signature_attestation_der(platform: SoftwarePlatform | None = None) -> bytes:
    """The platform's attestation certificate, validly re-signed by the root, whose signature
    BIT STRING declares 1 unused bit (the signature's last bit being 0, the bytes are unchanged)."""
    platform = platform or default_platform()
    tbs = x509.load_der_x509_certificate(platform.attestation_der).tbs_certificate_bytes
    while True:
        signature = platform.root_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        if not signature[-1] & 1:
            break
    sha256_oid = bytes.fromhex("06082a8648ce3d040302")
    return _tlv(0x30, tbs + _tlv(0x30, sha256_oid) + _tlv(0x03, b"\1" + signature))
