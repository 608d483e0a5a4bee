"""Evidence verification rate, beside the rate of the raw ECDSA P-256 verifications it contains.

Software-platform evidence carries two ECDSA P-256 / SHA-256 signatures a
verifier must check: the root's over the attestation certificate, and the
attestation key's over the report. Each baseline operation verifies exactly
those two signatures (keys parsed once), so its rate is the single-verification
rate divided by 2: the ceiling a verifier could reach if everything besides
ECDSA were free.

- ``mesatee.verify_evidence`` (pure Python) beside ``cryptography``'s
  ``public_key.verify`` (cryptography's bundled OpenSSL);
- ``verify_evidence_native`` (C++) beside the system libcrypto through ctypes
  (``d2i_PUBKEY`` once, then ``EVP_DigestVerifyInit`` + ``EVP_DigestVerify``).
"""

from __future__ import annotations

import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import harness
import libcrypto
import mesatee
from mesatee.core.attestation import parse_evidence
from mesatee.core.enclave import verify_evidence_native


def _signatures(evidence: bytes) -> list[tuple[ec.EllipticCurvePublicKey, bytes, bytes]]:
    """The evidence's two (public key, DER signature, signed message) triples."""
    ev = parse_evidence(evidence)
    cert = x509.load_der_x509_certificate(ev.attestation_cert)
    root = x509.load_der_x509_certificate(ev.root_cert)
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256):
        raise RuntimeError(f"unexpected certificate signature algorithm {cert.signature_algorithm_oid}")
    root_key, attestation_key = root.public_key(), cert.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    assert isinstance(attestation_key, ec.EllipticCurvePublicKey)
    r, s = int.from_bytes(ev.signature[:32], "big"), int.from_bytes(ev.signature[32:], "big")
    return [
        (root_key, cert.signature, cert.tbs_certificate_bytes),
        (attestation_key, encode_dss_signature(r, s), ev.report),
    ]


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    nonce = os.urandom(32)
    with (
        tempfile.TemporaryDirectory(prefix="mesatee-bench-") as platform_dir,
        mesatee.Enclave(platform_dir=platform_dir) as enclave,
    ):
        evidence = enclave.evidence(nonce=nonce)
        policy = mesatee.AttestationPolicy(
            mrenclave=enclave.identity.mrenclave,
            allow_software=True,
            trusted_roots=[mesatee.platform_root_certificate(platform_dir)],
        )

    # Both verifiers accept the evidence and agree (a benchmark of a refusal measures nothing).
    if mesatee.verify_evidence(evidence, policy, nonce=nonce) != verify_evidence_native(evidence, policy, nonce=nonce):
        raise RuntimeError("the Python and C++ verifiers disagree")

    triples = _signatures(evidence)
    (k1, sig1, msg1), (k2, sig2, msg2) = triples
    sha256 = ec.ECDSA(hashes.SHA256())
    verify1, verify2 = k1.verify, k2.verify

    def cryptography_pair() -> None:
        verify1(sig1, msg1, sha256)  # raises InvalidSignature on failure
        verify2(sig2, msg2, sha256)

    n1, n2 = libcrypto.EcdsaVerifier(_spki(k1)), libcrypto.EcdsaVerifier(_spki(k2))
    if not (n1.verify(sig1, msg1) and n2.verify(sig2, msg2)):
        raise RuntimeError("libcrypto ECDSA refused the evidence's signatures")
    if n2.verify(sig2, msg2 + b"x"):
        raise RuntimeError("libcrypto ECDSA accepted a wrong message")
    lverify1, lverify2 = n1.verify, n2.verify

    def libcrypto_pair() -> None:
        if not (lverify1(sig1, msg1) and lverify2(sig2, msg2)):
            raise RuntimeError("libcrypto ECDSA verification failed")

    verify_py, verify_cpp = mesatee.verify_evidence, verify_evidence_native

    def python_verifier() -> None:
        verify_py(evidence, policy, nonce=nonce)

    def native_verifier() -> None:
        verify_cpp(evidence, policy, nonce=nonce)

    batch = config.pick(100, 10)
    t = harness.compare(
        [
            harness.Candidate("python", python_verifier, batch),
            harness.Candidate("cryptography_ecdsa_x2", cryptography_pair, batch),
            harness.Candidate("native", native_verifier, batch),
            harness.Candidate("libcrypto_ecdsa_x2", libcrypto_pair, batch),
        ],
        config,
    )
    for key, name, verifier, baseline, baseline_name in (
        (
            "attestation.python",
            "verify_evidence (Python)",
            "python",
            "cryptography_ecdsa_x2",
            "cryptography ECDSA P-256 verify / 2",
        ),
        (
            "attestation.native",
            "verify_evidence_native (C++)",
            "native",
            "libcrypto_ecdsa_x2",
            "system libcrypto ECDSA P-256 verify / 2",
        ),
    ):
        report.figures.append(
            harness.Figure(
                id=key,
                name=name,
                unit="verif/s",
                value=t[verifier].per_second(),
                baseline_name=baseline_name,
                baseline_value=t[baseline].per_second(),
                samples={verifier: list(t[verifier].samples_ns), baseline: list(t[baseline].samples_ns)},
            )
        )
    report.notes.append(
        "ECDSA P-256 single verifications/s: cryptography "
        f"{2 * t['cryptography_ecdsa_x2'].per_second():,.0f}, system libcrypto "
        f"{2 * t['libcrypto_ecdsa_x2'].per_second():,.0f}. Time per evidence spent outside ECDSA: Python "
        f"{(t['python'].median_ns - t['cryptography_ecdsa_x2'].median_ns) / 1e3:,.1f} us, C++ "
        f"{(t['native'].median_ns - t['libcrypto_ecdsa_x2'].median_ns) / 1e3:,.1f} us."
    )
    return report


BENCHMARKS = {"attestation": run}
