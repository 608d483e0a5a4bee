"""A party of a task: its keys, its keyring of dataset keys, and what it does in the protocol.

A party holds an Ed25519 signing key and an X25519 HPKE key; its id is the
SHA-256 of its signing public key (see "Parties" in ``docs/formats.md``). It
encrypts datasets and keeps their keys, verifies an enclave's evidence,
approves manifests, grants its datasets' keys to an attested enclave for one
task and one slot, and opens the results addressed to it.

Party file (``Party.save``): a canonical msgpack map ``version`` (1), ``kdf``
(``name`` "scrypt", ``n``, ``r``, ``p``), ``salt`` (16 bytes), ``nonce``
(12 bytes) and ``ciphertext``: AES-256-GCM under scrypt(passphrase, salt)
with AAD = the canonical encoding of the same map without ``ciphertext``,
over the canonical map ``version`` (1), ``signing_key`` (Ed25519 seed),
``hpke_key`` (X25519 private key) and ``keyring`` (dataset id hex → ``key``,
``format`` and, for Teaclave files, ``iv``). The passphrase is NFC-normalised
UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mesatee.core import canonical, files, hpke
from mesatee.core.attestation import AttestationPolicy, VerifiedClaims, verify_evidence
from mesatee.core.binary import require_bytes
from mesatee.core.manifest import (
    EnclaveMeasurement,
    Manifest,
    ParticipantKeys,
    Receipt,
    ResultHead,
    TaskResult,
    unpad_return_value,
)
from mesatee.errors import AttestationError, CryptoError, FormatError, InvalidArgumentError, Status

__all__ = [
    "MAX_PARTY_FILE_SIZE",
    "PARTY_FILE_VERSION",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "DatasetKey",
    "OpenedResult",
    "Party",
    "PartyIdentity",
]

PARTY_FILE_VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
NONCE_SIZE = 12
KEY_SIZE = 32
MAX_PARTY_FILE_SIZE = 64 << 20
# Bounds on the cost a party file may ask of its reader (scrypt memory is 128·n·r bytes).
_MAX_SCRYPT_MEMORY = 256 << 20
_MAX_SCRYPT_P = 16
_WRONG_PASSPHRASE = "wrong passphrase or damaged party file"
_HEX_ID = re.compile(r"[0-9a-f]{64}")


def _short(value: bytes) -> str:
    return value[:4].hex() + "…"


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class PartyIdentity:
    """The public part of a party: its id and raw public keys (Ed25519 ``signing_key``, X25519 ``hpke_key``)."""

    party_id: bytes
    signing_key: bytes
    hpke_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "party_id", require_bytes("party_id", self.party_id, 32))
        object.__setattr__(self, "signing_key", require_bytes("signing_key", self.signing_key, KEY_SIZE))
        object.__setattr__(self, "hpke_key", require_bytes("hpke_key", self.hpke_key, KEY_SIZE))
        if hashlib.sha256(self.signing_key).digest() != self.party_id:
            raise InvalidArgumentError("party_id is not the SHA-256 of signing_key")

    @classmethod
    def from_keys(cls, signing_key: bytes, hpke_key: bytes) -> PartyIdentity:
        signing_key = require_bytes("signing_key", signing_key, KEY_SIZE)
        return cls(hashlib.sha256(signing_key).digest(), signing_key, hpke_key)

    @property
    def hex(self) -> str:
        """The party id in lowercase hex, as the protocol's maps key it."""
        return self.party_id.hex()

    @property
    def keys(self) -> ParticipantKeys:
        return ParticipantKeys(self.signing_key, self.hpke_key)

    def to_bytes(self) -> bytes:
        """Canonical map ``signing_key``, ``hpke_key`` (the id follows from the signing key)."""
        return canonical.encode({"signing_key": self.signing_key, "hpke_key": self.hpke_key})

    @classmethod
    def from_bytes(cls, data: bytes) -> PartyIdentity:
        value = canonical.decode(data, max_size=1024)
        if not isinstance(value, dict) or set(value) != {"signing_key", "hpke_key"}:
            raise FormatError("party identity: expected a map of exactly signing_key and hpke_key")
        try:
            return cls.from_keys(value["signing_key"], value["hpke_key"])
        except InvalidArgumentError as exc:
            raise FormatError(f"party identity: {exc}") from None


# --------------------------------------------------------------------------- keyring


@dataclass(frozen=True)
class DatasetKey:
    """What decrypts one dataset: its key, its file format and, for Teaclave files, its IV."""

    key: bytes = field(repr=False)
    format: str = files.FORMAT_MESATEE
    iv: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.format not in files.FORMATS:
            raise InvalidArgumentError(f"format {str(self.format)[:64]!r} is not one of {', '.join(files.FORMATS)}")
        object.__setattr__(self, "key", require_bytes("key", self.key, files.FORMATS[self.format]))
        if self.format == files.FORMAT_MESATEE:
            if self.iv is not None:
                raise InvalidArgumentError("mesatee-v1 files carry their nonces; an iv is only for Teaclave files")
        else:
            if self.iv is None:
                raise InvalidArgumentError(f"a {self.format} file needs its {files.TEACLAVE_IV_SIZE}-byte iv")
            object.__setattr__(self, "iv", require_bytes("iv", self.iv, files.TEACLAVE_IV_SIZE))

    def grant_payload(self) -> dict[str, bytes]:
        """The plaintext map of a grant ("Grant" in the spec)."""
        return {"key": self.key} if self.iv is None else {"key": self.key, "iv": self.iv}


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class OpenedResult:
    """A verified result as one party sees it: the receipt, its return value (if addressed to it), its outputs.

    ``outputs``: the plaintext of this party's outputs (:meth:`Party.open_result`); ``files``: where they were
    written instead (:meth:`Party.download_result`). ``missing``: outputs this party owns that the result did not
    carry (deleted from the node, or withheld by it).
    """

    receipt: Receipt
    return_value: bytes | None = field(repr=False)
    outputs: MappingProxyType[str, bytes] = field(repr=False)
    missing: frozenset[str] = frozenset()
    files: MappingProxyType[str, Path] = field(default_factory=lambda: MappingProxyType({}))


# --------------------------------------------------------------------------- party file


def _scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not isinstance(passphrase, str):
        raise InvalidArgumentError(f"passphrase must be a str, not {type(passphrase).__name__}")
    if not passphrase:
        raise InvalidArgumentError("passphrase must not be empty")
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(secret)


def _file_fields(value: Any) -> tuple[dict[str, Any], bytes]:
    """Check the outer map of a party file; return it without the ciphertext, and the ciphertext."""

    def bad(message: str) -> FormatError:
        return FormatError(f"party file: {message}")

    if not isinstance(value, dict):
        raise bad("not a map")
    expected = {"version", "kdf", "salt", "nonce", "ciphertext"}
    if set(value) != expected:
        raise bad(f"fields {sorted(value)} are not {sorted(expected)}")
    if value["version"] != PARTY_FILE_VERSION or isinstance(value["version"], bool):
        raise bad(f"unsupported version {value['version']!r} (expected {PARTY_FILE_VERSION})")
    kdf = value["kdf"]
    if not isinstance(kdf, dict) or set(kdf) != {"name", "n", "r", "p"} or kdf["name"] != "scrypt":
        raise bad("kdf must be a map of name 'scrypt', n, r and p")
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (n, r, p)):
        raise bad("scrypt parameters must be ints")
    if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= _MAX_SCRYPT_P or 128 * n * r > _MAX_SCRYPT_MEMORY:
        raise bad(f"scrypt parameters n={n}, r={r}, p={p} are invalid or too costly")
    for name, size in (("salt", SALT_SIZE), ("nonce", NONCE_SIZE)):
        if not isinstance(value[name], bytes) or len(value[name]) != size:
            raise bad(f"{name} must be {size} bytes")
    ciphertext = value["ciphertext"]
    if not isinstance(ciphertext, bytes) or len(ciphertext) < 16:
        raise bad("ciphertext must be bytes holding at least a tag")
    header = {k: v for k, v in value.items() if k != "ciphertext"}
    return header, ciphertext


def _keyring_from(value: Any) -> dict[bytes, DatasetKey]:
    if not isinstance(value, dict):
        raise InvalidArgumentError("keyring must be a map")
    keyring = {}
    for key, entry in value.items():
        if not isinstance(key, str) or not _HEX_ID.fullmatch(key):
            raise InvalidArgumentError(f"keyring key {key[:80]!r} is not a dataset id in lowercase hex")
        dataset_id = bytes.fromhex(key)
        if not isinstance(entry, dict) or not {"key", "format"} <= set(entry) <= {"key", "format", "iv"}:
            raise InvalidArgumentError(f"keyring[{key}] must be a map of key, format and maybe iv")
        keyring[dataset_id] = DatasetKey(entry["key"], entry["format"], entry.get("iv"))
    return keyring


# --------------------------------------------------------------------------- party


class Party:
    """A party's private keys and keyring. Nothing here calls the enclave or needs native code."""

    __slots__ = ("_hpke_key", "_identity", "_keyring", "_signing_key")

    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        hpke_key: X25519PrivateKey,
        keyring: dict[bytes, DatasetKey] | None = None,
    ) -> None:
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise InvalidArgumentError("signing_key must be an Ed25519PrivateKey")
        if not isinstance(hpke_key, X25519PrivateKey):
            raise InvalidArgumentError("hpke_key must be an X25519PrivateKey")
        self._signing_key = signing_key
        self._hpke_key = hpke_key
        self._identity = PartyIdentity.from_keys(
            signing_key.public_key().public_bytes_raw(), hpke_key.public_key().public_bytes_raw()
        )
        self._keyring: dict[bytes, DatasetKey] = {}
        for dataset_id, entry in (keyring or {}).items():
            if not isinstance(entry, DatasetKey):
                raise InvalidArgumentError("keyring values must be DatasetKey")
            self._keyring[require_bytes("dataset_id", dataset_id, 32)] = entry

    @classmethod
    def generate(cls) -> Party:
        """A new party with fresh keys and an empty keyring."""
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    def __repr__(self) -> str:
        return f"Party({self.party_id.hex()}, {len(self._keyring)} dataset key(s))"

    @property
    def identity(self) -> PartyIdentity:
        return self._identity

    @property
    def party_id(self) -> bytes:
        return self._identity.party_id

    # ----------------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike[str], passphrase: str) -> None:
        """Write the keys and keyring, encrypted under the passphrase, to ``path`` (atomically, mode 0600)."""
        salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
        header = {
            "version": PARTY_FILE_VERSION,
            "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": salt,
            "nonce": nonce,
        }
        key = _scrypt_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        secret = canonical.encode(
            {
                "version": PARTY_FILE_VERSION,
                "signing_key": self._signing_key.private_bytes_raw(),
                "hpke_key": self._hpke_key.private_bytes_raw(),
                "keyring": {
                    dataset_id.hex(): {"format": entry.format, **entry.grant_payload()}
                    for dataset_id, entry in self._keyring.items()
                },
            }
        )
        ciphertext = AESGCM(key).encrypt(nonce, secret, canonical.encode(header))
        files.atomic_write_bytes(path, canonical.encode({**header, "ciphertext": ciphertext}))

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Party:
        """Read a party file; ``CryptoError`` for a wrong passphrase, ``FormatError`` for a malformed file."""
        path = Path(path)
        with open(path, "rb") as f:
            data = f.read(MAX_PARTY_FILE_SIZE + 1)
        try:
            value = canonical.decode(data, max_size=MAX_PARTY_FILE_SIZE)
        except FormatError as exc:
            raise FormatError(f"party file: {exc}") from None
        header, ciphertext = _file_fields(value)
        kdf = header["kdf"]
        key = _scrypt_key(passphrase, header["salt"], kdf["n"], kdf["r"], kdf["p"])
        try:
            secret = AESGCM(key).decrypt(header["nonce"], ciphertext, canonical.encode(header))
        except InvalidTag:
            raise CryptoError(_WRONG_PASSPHRASE) from None
        try:
            inner = canonical.decode(secret, max_size=len(secret))
            if not isinstance(inner, dict) or set(inner) != {"version", "signing_key", "hpke_key", "keyring"}:
                raise InvalidArgumentError("the keys are not a map of version, signing_key, hpke_key and keyring")
            if inner["version"] != PARTY_FILE_VERSION:
                raise InvalidArgumentError(f"unsupported key version {inner['version']!r}")
            signing = Ed25519PrivateKey.from_private_bytes(require_bytes("signing_key", inner["signing_key"], KEY_SIZE))
            hpke_key = X25519PrivateKey.from_private_bytes(require_bytes("hpke_key", inner["hpke_key"], KEY_SIZE))
            return cls(signing, hpke_key, _keyring_from(inner["keyring"]))
        except (InvalidArgumentError, FormatError) as exc:
            raise FormatError(f"party file: {exc}") from None

    # ----------------------------------------------------------------------- datasets

    def encrypt_dataset(
        self,
        src_path: str | os.PathLike[str],
        dst_path: str | os.PathLike[str],
        *,
        chunk_size: int = files.DEFAULT_CHUNK_SIZE,
    ) -> files.EncryptedFile:
        """Encrypt a file as a dataset under a fresh key, and keep the key (``save`` to persist it)."""
        encrypted = files.encrypt_file(src_path, dst_path, chunk_size=chunk_size)
        self._keyring[encrypted.dataset_id] = DatasetKey(encrypted.key)
        return encrypted

    def add_dataset_key(
        self, dataset_id: bytes, key: bytes, *, iv: bytes | None = None, format: str = files.FORMAT_MESATEE
    ) -> None:
        """Keep the key of a dataset encrypted elsewhere (e.g. a Teaclave file: its key and IV)."""
        self._keyring[require_bytes("dataset_id", dataset_id, 32)] = DatasetKey(require_bytes("key", key), format, iv)

    def dataset_entry(self, dataset_id: bytes) -> DatasetKey:
        entry = self._keyring.get(require_bytes("dataset_id", dataset_id, 32))
        if entry is None:
            raise InvalidArgumentError(f"no key for dataset {dataset_id.hex()} in this party's keyring")
        return entry

    def dataset_key(self, dataset_id: bytes) -> bytes:
        return self.dataset_entry(dataset_id).key

    @property
    def datasets(self) -> tuple[bytes, ...]:
        """The ids of the datasets whose keys this party holds."""
        return tuple(self._keyring)

    # ----------------------------------------------------------------------- protocol

    def verify_enclave(
        self,
        evidence: bytes,
        policy: AttestationPolicy,
        *,
        nonce: bytes | None,
        now: datetime | None = None,
    ) -> VerifiedClaims:
        """Verify an enclave's evidence against this party's policy (pure Python verifier).

        ``nonce`` is required: the fresh challenge this party sent, so that old
        evidence cannot be replayed to it. ``None`` accepts any nonce, and must be
        said explicitly (e.g. for evidence published once for many verifiers).
        """
        return verify_evidence(evidence, policy, nonce=nonce, now=now)

    def _check_participant(self, manifest: Manifest) -> None:
        if not isinstance(manifest, Manifest):
            raise InvalidArgumentError(f"manifest must be a Manifest, not {type(manifest).__name__}")
        keys = manifest.participants.get(self.party_id)
        if keys is None:
            raise InvalidArgumentError(f"party {self.party_id.hex()} is not a participant of this task")
        if keys != self._identity.keys:
            # Same id, so the same signing key: the HPKE key differs, and outputs would be sealed to someone else.
            raise InvalidArgumentError("the manifest lists this party with another HPKE key")

    def _check_live(self, manifest: Manifest) -> None:
        if manifest.expired():
            raise InvalidArgumentError(f"the manifest expired at {manifest.expires_at}")

    def approve(self, manifest: Manifest) -> bytes:
        """This party's Ed25519 approval of the manifest (after checking it lists this party's own keys)."""
        self._check_participant(manifest)
        self._check_live(manifest)
        return self._signing_key.sign(hpke.approval_message(manifest.hash))

    def grant(self, manifest: Manifest, slot: str, enclave: VerifiedClaims) -> bytes:
        """The key of this party's dataset for input ``slot``, sealed to the attested enclave for this task only.

        Refuses unless this party owns the slot, holds the dataset's key in
        the same format, and the enclave meets the manifest's requirements.
        """
        self._check_participant(manifest)
        self._check_live(manifest)
        input_ = manifest.inputs.get(slot)
        if input_ is None:
            raise InvalidArgumentError(f"the manifest has no input slot {str(slot)[:64]!r}")
        if input_.owner != self.party_id:
            raise InvalidArgumentError(
                f"input {slot!r} belongs to party {_short(input_.owner)}, not to this party: only its owner grants it"
            )
        manifest.check_enclave(enclave)
        entry = self.dataset_entry(input_.dataset_id)
        if entry.format != input_.format:
            raise InvalidArgumentError(
                f"input {slot!r} is a {input_.format} file but the keyring holds a {entry.format} key for it"
            )
        return hpke.seal(
            enclave.hpke_public_key,
            canonical.encode(entry.grant_payload()),
            hpke.grant_info(manifest.hash, slot),
        )

    def verify_result(self, head: ResultHead, manifest: Manifest, enclave: VerifiedClaims) -> Receipt:
        """Verify a result's head (everything but the output files) and return its receipt.

        Checks the receipt's signature under the attested enclave's key, that it
        is for this manifest and names the attested enclave and the manifest's
        outputs, and that every return value hashes to the receipt. Each output
        file must then hash to ``receipt.outputs[slot]``.
        """
        if not isinstance(head, ResultHead):
            raise InvalidArgumentError(f"head must be a ResultHead, not {type(head).__name__}")
        self._check_participant(manifest)
        manifest.check_enclave(enclave)
        receipt = head.verify(manifest.hash, Ed25519PublicKey.from_public_bytes(enclave.signing_public_key))
        if receipt.enclave != EnclaveMeasurement.of(enclave):
            raise AttestationError(
                f"the receipt names enclave {_short(receipt.enclave.mrenclave)} "
                f"(security version {receipt.enclave.security_version}), not the attested one",
                Status.CLAIMS_MISMATCH,
            )
        if set(receipt.outputs) != set(manifest.outputs):
            raise FormatError(f"the result's outputs {sorted(receipt.outputs)} are not the manifest's")
        return receipt

    def _output_key(self, head: ResultHead, manifest: Manifest, slot: str) -> bytes:
        sealed = head.outputs[slot].keys.get(self.party_id)
        if sealed is None:
            raise FormatError(f"the result carries no key of output {slot!r} for this party")
        key = hpke.open(self._hpke_key, sealed, hpke.output_key_info(manifest.hash, slot))
        if len(key) != files.KEY_SIZE:
            raise FormatError(f"the key of output {slot!r} is {len(key)} bytes, not {files.KEY_SIZE}")
        return key

    def _return_value(self, head: ResultHead, manifest: Manifest) -> bytes | None:
        """The return value sealed to this party (None if there is none)."""
        sealed = head.return_value.get(self.party_id)
        if sealed is None:
            return None
        return unpad_return_value(hpke.open(self._hpke_key, sealed, hpke.return_value_info(manifest.hash)))

    def _owned(self, manifest: Manifest) -> list[str]:
        return [slot for slot, spec in manifest.outputs.items() if self.party_id in spec.owners]

    def open_result(self, result: TaskResult, manifest: Manifest, enclave: VerifiedClaims) -> OpenedResult:
        """Verify a task's result (:meth:`verify_result`, and every file against the receipt) and decrypt what is
        addressed to this party: the return value sealed to it (None if none) and every output it owns."""
        if not isinstance(result, TaskResult):
            raise InvalidArgumentError(f"result must be a TaskResult, not {type(result).__name__}")
        head = result.head
        receipt = self.verify_result(head, manifest, enclave)
        result.check_files(receipt)
        owned = self._owned(manifest)
        outputs = {
            slot: files.decrypt_bytes(result.outputs[slot].file, self._output_key(head, manifest, slot))
            for slot in owned
            if slot in result.outputs
        }
        value, missing = self._return_value(head, manifest), frozenset(owned) - set(outputs)
        return OpenedResult(receipt, value, MappingProxyType(outputs), missing)

    def download_result(
        self,
        head: ResultHead,
        manifest: Manifest,
        enclave: VerifiedClaims,
        open_output: Callable[[str], AbstractContextManager[BinaryIO]],
        folder: str | os.PathLike[str],
    ) -> OpenedResult:
        """Verify a result's head (:meth:`verify_result`) and stream this party's outputs into ``folder``.

        ``open_output(slot)`` opens the output's ciphertext (a node's download).
        Each output is decrypted as it is read into a temporary file in
        ``folder`` (created mode 0700), renamed to ``folder/<slot>`` (mode 0600)
        only once it authenticated and hashed to the receipt's digest; a failure
        leaves no file of that output. Memory stays within a few chunks.
        """
        receipt = self.verify_result(head, manifest, enclave)
        folder = Path(folder)
        owned = self._owned(manifest)
        available = [slot for slot in owned if slot in head.outputs]
        for slot in available:
            target = folder / slot
            if slot in (".", "..") or (target.exists() and not target.is_file()):  # a new file is renamed over it
                raise InvalidArgumentError(f"{target}: output {slot!r} cannot be written there (not a regular file)")
        if available:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for slot in available:
            key = self._output_key(head, manifest, slot)
            with open_output(slot) as stream:
                files.decrypt_to_file(
                    stream, folder / slot, key, digest=receipt.outputs[slot], max_size=head.outputs[slot].size
                )
            written[slot] = folder / slot
        value, missing = self._return_value(head, manifest), frozenset(owned) - set(written)
        return OpenedResult(receipt, value, MappingProxyType({}), missing, MappingProxyType(written))
