"""A stand-in for the enclave's side of the task protocol, written from docs/formats.md, for party-side tests.

It builds everything it returns from raw dictionaries and ``canonical.encode``
(not from ``mesatee.core.manifest``'s encoders), so the party-side parsers are
checked against the spec rather than against themselves. Its evidence comes
from ``evidence_factory`` and is verified by the real verifier.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import evidence_factory
from mesatee.core import canonical, files, hpke
from mesatee.core.attestation import AttestationPolicy, VerifiedClaims, verify_evidence
from mesatee.core.manifest import EnclaveRequirement, Manifest, pad_return_value, verify_approval

Function = Callable[[Mapping[str, Any], dict[str, bytes]], tuple[bytes, dict[str, bytes]]]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class FakeEnclave:
    """An enclave's keys and identity, and ``invoke`` following the spec's checks and result layout."""

    def __init__(
        self,
        *,
        mrenclave: bytes = evidence_factory.MRENCLAVE,
        mrsigner: bytes = evidence_factory.MRSIGNER,
        product_id: int = evidence_factory.PRODUCT_ID,
        security_version: int = evidence_factory.SECURITY_VERSION,
        debug: bool = False,
    ) -> None:
        self.signing_key = Ed25519PrivateKey.generate()
        self.hpke_key = X25519PrivateKey.generate()
        self.identity = dict(
            mrenclave=mrenclave, mrsigner=mrsigner, product_id=product_id, security_version=security_version
        )
        self.debug = debug

    @property
    def hpke_public_key(self) -> bytes:
        return self.hpke_key.public_key().public_bytes_raw()

    @property
    def signing_public_key(self) -> bytes:
        return self.signing_key.public_key().public_bytes_raw()

    def evidence(self, nonce: bytes = b"") -> tuple[bytes, AttestationPolicy]:
        """Software-platform evidence of this enclave's keys, and a policy that accepts it."""
        evidence, root = evidence_factory.make_evidence(
            nonce=nonce,
            hpke_public_key=self.hpke_public_key,
            signing_public_key=self.signing_public_key,
            debug=self.debug,
            **self.identity,
        )
        policy = AttestationPolicy(
            mrenclave=self.identity["mrenclave"], allow_software=True, allow_debug=True, trusted_roots=(root,)
        )
        return evidence, policy

    @property
    def claims(self) -> VerifiedClaims:
        evidence, policy = self.evidence()
        return verify_evidence(evidence, policy)

    def requirement(self) -> EnclaveRequirement:
        return EnclaveRequirement(mrenclave=self.identity["mrenclave"])

    def open_grant(self, manifest: Manifest, slot: str, grant: bytes) -> dict[str, bytes]:
        payload = hpke.open(self.hpke_key, grant, hpke.grant_info(manifest.hash, slot))
        return canonical.decode(payload, max_size=1024)

    def invoke(self, invocation: bytes, function: Function) -> bytes:
        """Run the task of an invocation; AssertionError (or a mesatee error) where the enclave would refuse."""
        request = canonical.decode(invocation, max_size=1 << 30)
        assert set(request) == {"manifest", "approvals", "grants", "inputs", "now"}
        manifest = Manifest.from_bytes(request["manifest"])
        h = sha256(request["manifest"])
        assert h == manifest.hash
        assert request["now"] <= manifest.expires_at
        assert any(r.mrenclave == self.identity["mrenclave"] for r in manifest.enclaves)
        assert set(request["approvals"]) == {party_id.hex() for party_id in manifest.participants}
        for party_id in manifest.participants:
            verify_approval(manifest, party_id, request["approvals"][party_id.hex()])
        assert set(request["grants"]) == set(manifest.inputs) == set(request["inputs"])

        plaintexts = {}
        for slot, spec in manifest.inputs.items():
            grant = self.open_grant(manifest, slot, request["grants"][slot])
            file = request["inputs"][slot]
            assert sha256(file) == spec.dataset_id
            if spec.format == "mesatee-v1":
                assert set(grant) == {"key"}
                plaintexts[slot] = files.decrypt_bytes(file, grant["key"])
            else:
                assert set(grant) == {"key", "iv"}
                plaintexts[slot] = files.teaclave_decrypt(file, grant["key"], grant["iv"])

        return_value, produced = function(manifest.arguments, plaintexts)

        outputs, output_digests = {}, {}
        for slot, spec in manifest.outputs.items():
            key = os.urandom(32)
            file = files.encrypt_bytes(produced[slot], key)
            info = b"mesatee/output-key/v1" + h + len(slot).to_bytes(2, "little") + slot.encode()
            keys = {owner.hex(): hpke.seal(manifest.participants[owner].hpke_key, key, info) for owner in spec.owners}
            outputs[slot] = {"file": file, "keys": keys}
            output_digests[slot] = sha256(file)
        returned = {
            party_id.hex(): hpke.seal(keys.hpke_key, pad_return_value(return_value), b"mesatee/return-value/v1" + h)
            for party_id, keys in manifest.participants.items()
        }
        receipt = canonical.encode(
            {
                "version": 1,
                "manifest_hash": h,
                "status": "ok",
                "outputs": output_digests,
                "return_value": {party: sha256(sealed) for party, sealed in returned.items()},
                "enclave": dict(self.identity),
            }
        )
        signature = self.signing_key.sign(b"mesatee/receipt/v1" + sha256(receipt))
        return canonical.encode(
            {"receipt": receipt, "signature": signature, "outputs": outputs, "return_value": returned}
        )
