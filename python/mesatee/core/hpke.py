"""HPKE and the protocol's domain-separation labels (see "HPKE" in ``docs/formats.md``).

RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
single shot, empty AAD. On the wire a ciphertext is ``enc (32 bytes) ‖ ct``.
Each purpose binds its context through ``info`` under its own label, and each
signed statement carries its own label, so nothing made for one purpose is
accepted for another. :data:`LABELS` is the one registry of those labels.
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType

from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from mesatee.core.binary import require_bytes
from mesatee.errors import CryptoError, InvalidArgumentError

__all__ = [
    "APPROVAL_LABEL",
    "ENC_SIZE",
    "GRANT_LABEL",
    "HASH_SIZE",
    "KEY_SIZE",
    "LABELS",
    "OUTPUT_KEY_LABEL",
    "OVERHEAD",
    "RECEIPT_LABEL",
    "REQUEST_LABEL",
    "RETURN_VALUE_LABEL",
    "SUITE",
    "TAG_SIZE",
    "approval_message",
    "grant_info",
    "open",
    "output_key_info",
    "receipt_message",
    "request_message",
    "return_value_info",
    "seal",
]

SUITE = _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM)
KEY_SIZE = 32  # X25519 public and private keys
ENC_SIZE = 32  # the encapsulated key: the sender's ephemeral X25519 public key
TAG_SIZE = 16
OVERHEAD = ENC_SIZE + TAG_SIZE
HASH_SIZE = 32  # manifest hashes (SHA-256)

# HPKE info labels
GRANT_LABEL = b"mesatee/grant/v1"
OUTPUT_KEY_LABEL = b"mesatee/output-key/v1"
RETURN_VALUE_LABEL = b"mesatee/return-value/v1"
# Ed25519 message labels
APPROVAL_LABEL = b"mesatee/approval/v1"
RECEIPT_LABEL = b"mesatee/receipt/v1"
REQUEST_LABEL = b"mesatee/request/v1"  # a party's signed request to the node

#: Every label of the protocol, by purpose. None is a prefix of another, so no
#: info string or signed message of one purpose equals one of another.
LABELS: MappingProxyType[str, bytes] = MappingProxyType(
    {
        "grant": GRANT_LABEL,
        "output-key": OUTPUT_KEY_LABEL,
        "return-value": RETURN_VALUE_LABEL,
        "approval": APPROVAL_LABEL,
        "receipt": RECEIPT_LABEL,
        "request": REQUEST_LABEL,
    }
)


def _manifest_hash(value: object) -> bytes:
    data = require_bytes("manifest_hash", value)
    if len(data) != HASH_SIZE:
        raise InvalidArgumentError(f"manifest_hash must be {HASH_SIZE} bytes, got {len(data)}")
    return data


def _slot(value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"slot must be a str, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError("slot is not encodable as UTF-8") from None
    if not 0 < len(raw) <= 0xFFFF:
        raise InvalidArgumentError(f"slot must be 1..65535 UTF-8 bytes, got {len(raw)}")
    return len(raw).to_bytes(2, "little") + raw


# --------------------------------------------------------------------------- info and messages


def grant_info(manifest_hash: bytes, slot: str) -> bytes:
    """``info`` of a grant: an input's file key, sealed to the enclave."""
    return GRANT_LABEL + _manifest_hash(manifest_hash) + _slot(slot)


def output_key_info(manifest_hash: bytes, slot: str) -> bytes:
    """``info`` of an output's file key, sealed by the enclave to one of the output's owners."""
    return OUTPUT_KEY_LABEL + _manifest_hash(manifest_hash) + _slot(slot)


def return_value_info(manifest_hash: bytes) -> bytes:
    """``info`` of the return value, sealed by the enclave to one participant."""
    return RETURN_VALUE_LABEL + _manifest_hash(manifest_hash)


def approval_message(manifest_hash: bytes) -> bytes:
    """The message a participant signs (Ed25519) to approve a manifest."""
    return APPROVAL_LABEL + _manifest_hash(manifest_hash)


def receipt_message(receipt_bytes: bytes) -> bytes:
    """The message the enclave signs (Ed25519) for a receipt: the label and the receipt's SHA-256."""
    return RECEIPT_LABEL + hashlib.sha256(require_bytes("receipt_bytes", receipt_bytes)).digest()


def request_message(fields_bytes: bytes) -> bytes:
    """The message a party signs (Ed25519) for a request to the node: the label and SHA-256 of its fields."""
    return REQUEST_LABEL + hashlib.sha256(require_bytes("fields_bytes", fields_bytes)).digest()


# --------------------------------------------------------------------------- seal and open


def _public_key(value: object) -> X25519PublicKey:
    if isinstance(value, X25519PublicKey):
        return value
    raw = require_bytes("recipient_public_key", value)
    if len(raw) != KEY_SIZE:
        raise InvalidArgumentError(f"recipient_public_key must be {KEY_SIZE} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def seal(recipient_public_key: bytes | X25519PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """Encrypt ``plaintext`` to the holder of the X25519 key; returns ``enc ‖ ct``."""
    key = _public_key(recipient_public_key)
    plaintext = require_bytes("plaintext", plaintext)
    info = require_bytes("info", info)
    try:
        return SUITE.encrypt(plaintext, key, info=info)
    except ValueError:
        # A low-order public key makes the Diffie-Hellman result all zeros (RFC 9180 §7.1.4).
        raise InvalidArgumentError("recipient_public_key is not a usable X25519 public key") from None


def open(recipient_private_key: X25519PrivateKey, ciphertext: bytes, info: bytes) -> bytes:
    """Decrypt ``enc ‖ ct``; ``CryptoError`` unless it was sealed to this key with this exact ``info``."""
    if not isinstance(recipient_private_key, X25519PrivateKey):
        raise InvalidArgumentError(
            f"recipient_private_key must be an X25519PrivateKey, not {type(recipient_private_key).__name__}"
        )
    ciphertext = require_bytes("ciphertext", ciphertext)
    info = require_bytes("info", info)
    if len(ciphertext) < OVERHEAD:
        raise CryptoError(
            f"HPKE ciphertext did not open: {len(ciphertext)} bytes is shorter than enc and tag ({OVERHEAD})"
        )
    try:
        return SUITE.decrypt(ciphertext, recipient_private_key, info=info)
    except Exception:
        # InvalidTag, or a ValueError for an enc that is a low-order point: the same refusal either way.
        raise CryptoError(
            "HPKE ciphertext did not open (tampered, sealed to another key, or made for another purpose)"
        ) from None
