"""The task manifest, the invocation, and the enclave's result and receipt.

See "Manifest", "Invocation" and "Result" in ``docs/formats.md``. Every one is
canonical msgpack (:mod:`mesatee.core.canonical`); parsing is strict and each
refusal names the field. Objects built in Python are validated the same way
(``InvalidArgumentError``), so a ``Manifest`` that exists is one the enclave's
rules accept.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mesatee.core import canonical
from mesatee.core.attestation import VerifiedClaims
from mesatee.core.binary import require_bytes
from mesatee.core.files import FORMATS
from mesatee.core.hpke import approval_message, receipt_message
from mesatee.errors import AttestationError, CryptoError, FormatError, InvalidArgumentError, Status

__all__ = [
    "DEFAULT_LIFETIME",
    "HASH_SIZE",
    "KEY_SIZE",
    "MANIFEST_VERSION",
    "MAX_INPUTS",
    "MAX_MANIFEST_SIZE",
    "MAX_ENCLAVES",
    "MAX_OUTPUTS",
    "MAX_PARTICIPANTS",
    "MAX_RECEIPT_SIZE",
    "MAX_RESULT_SIZE",
    "PARTY_ID_SIZE",
    "RECEIPT_VERSION",
    "SIGNATURE_SIZE",
    "STATUS_OK",
    "TASK_ID_SIZE",
    "EnclaveMeasurement",
    "EnclaveRequirement",
    "FunctionRef",
    "InputSlot",
    "Manifest",
    "OutputFile",
    "OutputInfo",
    "OutputSlot",
    "ParticipantKeys",
    "PartyKeys",
    "Receipt",
    "ResultHead",
    "TaskResult",
    "check_slot",
    "encode_invocation",
    "verify_approval",
]

MANIFEST_VERSION = 1
RECEIPT_VERSION = 1
STATUS_OK = "ok"
TASK_ID_SIZE = 16
PARTY_ID_SIZE = 32
HASH_SIZE = 32
KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_INPUTS = 64
MAX_OUTPUTS = 64
MAX_PARTICIPANTS = 64
MAX_ENCLAVES = 16
MAX_MANIFEST_SIZE = 1 << 20
MAX_RECEIPT_SIZE = 1 << 20
MAX_RESULT_SIZE = 1 << 30
DEFAULT_LIFETIME = 24 * 3600

_U16_MAX = 0xFFFF
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)
_SLOT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEX_ID = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


def _short(value: bytes) -> str:
    return value[:4].hex() + "…"


# --------------------------------------------------------------------------- field checks
# Each raises InvalidArgumentError naming the field; parsers turn it into FormatError.


def _int(path: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{path} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{path} must be in {low}..{high}, got {value}")
    return int(value)


def _str(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{path} must be a str, not {type(value).__name__}")
    return str(value)


def _mapping(path: str, value: object) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{path} must be a map, not {type(value).__name__}")
    return value


def _fields(value: object, required: tuple[str, ...]) -> Mapping[str, Any]:
    """A decoded map holding exactly the ``required`` keys (callers add the path with :func:`_within`)."""
    value = _mapping("value", value)
    for key in value:
        if key not in required:
            raise InvalidArgumentError(f"unknown field {str(key)[:64]!r}")
    for key in required:
        if key not in value:
            raise InvalidArgumentError(f"missing field {key!r}")
    return value


def check_slot(path: str, slot: object) -> str:
    """A slot name: 1..64 bytes of ``[A-Za-z0-9_.-]``."""
    slot = _str(path, slot)
    if not _SLOT.fullmatch(slot):
        raise InvalidArgumentError(f"{path}: slot name {slot[:80]!r} is not 1..64 characters of [A-Za-z0-9_.-]")
    return slot


def _party_id(path: str, value: object) -> bytes:
    return require_bytes(path, value, PARTY_ID_SIZE)


def _hex_id(path: str, key: object) -> bytes:
    """A party id from its encoding as a map key: 64 lowercase hex digits."""
    if not isinstance(key, str) or not _HEX_ID.fullmatch(key):
        raise InvalidArgumentError(f"{path}: key {str(key)[:80]!r} is not a party id in lowercase hex")
    return bytes.fromhex(key)


def _freeze(value: Any) -> Any:
    """Read-only copy of a canonical value: mappings become read-only, lists tuples, buffers bytes."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _sorted_map(items: Iterable[tuple[Any, T]], key: Callable[[Any], bytes]) -> MappingProxyType[Any, T]:
    return MappingProxyType(dict(sorted(items, key=lambda item: key(item[0]))))


def _slot_map(path: str, value: object, kind: type[T], limit: int) -> MappingProxyType[str, T]:
    value = _mapping(path, value)
    if len(value) > limit:
        raise InvalidArgumentError(f"{path}: {len(value)} slots exceed the limit of {limit}")
    for slot, item in value.items():
        check_slot(f"{path}", slot)
        if not isinstance(item, kind):
            raise InvalidArgumentError(f"{path}[{slot!r}] must be a {kind.__name__}, not {type(item).__name__}")
    return _sorted_map(value.items(), lambda slot: slot.encode())


def _within(path: str, build: Callable[[], T]) -> T:
    """Run ``build``; prefix the message of an InvalidArgumentError it raises with ``path``."""
    try:
        return build()
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{path}: {exc}") from None


def _parse(what: str, build: Callable[[], T]) -> T:
    """Run a parser whose field checks raise InvalidArgumentError; report them as FormatError."""
    try:
        return build()
    except InvalidArgumentError as exc:
        raise FormatError(f"{what}: {exc}") from None


def _decode_slots(path: str, value: object, decode: Callable[[object], T], limit: int) -> dict[str, T]:
    """A decoded map of slots: the count and the names checked first, then each slot's content."""
    value = _mapping(path, value)
    if len(value) > limit:
        raise InvalidArgumentError(f"{path}: {len(value)} slots exceed the limit of {limit}")
    for slot in value:
        check_slot(path, slot)
    return {slot: _within(f"{path}[{slot!r}]", lambda item=item: decode(item)) for slot, item in value.items()}


def _roles(
    creator: bytes, function: FunctionRef, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
) -> dict[bytes, str]:
    roles: dict[bytes, str] = {}
    if function.owner is not None:
        roles[function.owner] = "function owner"
    for slot, output in outputs.items():
        roles.update((owner, f"owner of output {slot!r}") for owner in output.owners)
    for slot, input_ in inputs.items():
        roles[input_.owner] = f"owner of input {slot!r}"
    roles[creator] = "creator"
    return roles


# --------------------------------------------------------------------------- manifest parts


class PartyKeys(Protocol):
    """The public identity of a party (``mesatee.parties.PartyIdentity`` is one)."""

    @property
    def party_id(self) -> bytes: ...

    @property
    def signing_key(self) -> bytes: ...

    @property
    def hpke_key(self) -> bytes: ...


@dataclass(frozen=True)
class FunctionRef:
    """The function a task runs; ``owner`` is its owner's party id, or None for a public built-in."""

    name: str
    version: int
    owner: bytes | None = None

    def __post_init__(self) -> None:
        if not _str("name", self.name):
            raise InvalidArgumentError("name must not be empty")
        _int("version", self.version, _I64_MIN, _I64_MAX)
        if self.owner is not None:
            object.__setattr__(self, "owner", _party_id("owner", self.owner))

    def _encode(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "owner": self.owner}

    @classmethod
    def _decode(cls, value: object) -> FunctionRef:
        m = _fields(value, ("name", "version", "owner"))
        return cls(m["name"], m["version"], m["owner"])


@dataclass(frozen=True)
class InputSlot:
    """An input: whose dataset, which one (SHA-256 of its encrypted file) and its file format."""

    owner: bytes
    dataset_id: bytes
    format: str = "mesatee-v1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner", _party_id("owner", self.owner))
        object.__setattr__(self, "dataset_id", require_bytes("dataset_id", self.dataset_id, HASH_SIZE))
        if _str("format", self.format) not in FORMATS:
            raise InvalidArgumentError(f"format {self.format[:64]!r} is not one of {', '.join(FORMATS)}")

    def _encode(self) -> dict[str, Any]:
        return {"owner": self.owner, "dataset_id": self.dataset_id, "format": self.format}

    @classmethod
    def _decode(cls, value: object) -> InputSlot:
        m = _fields(value, ("owner", "dataset_id", "format"))
        return cls(m["owner"], m["dataset_id"], m["format"])


@dataclass(frozen=True)
class OutputSlot:
    """An output and the parties who receive its file key (at least one; sorted, unique)."""

    owners: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if isinstance(self.owners, bytes | bytearray | str) or not isinstance(self.owners, Iterable):
            raise InvalidArgumentError("owners must be a sequence of party ids")
        owners = tuple(_party_id(f"owners[{i}]", owner) for i, owner in enumerate(self.owners))
        if not owners:
            raise InvalidArgumentError("owners must name at least one party")
        if len(owners) > MAX_PARTICIPANTS:
            raise InvalidArgumentError(f"owners: {len(owners)} parties exceed the limit of {MAX_PARTICIPANTS}")
        if any(a >= b for a, b in itertools.pairwise(owners)):
            raise InvalidArgumentError("owners must be sorted and unique")
        object.__setattr__(self, "owners", owners)

    def _encode(self) -> dict[str, Any]:
        return {"owners": list(self.owners)}

    @classmethod
    def _decode(cls, value: object) -> OutputSlot:
        m = _fields(value, ("owners",))
        if not isinstance(m["owners"], list):
            raise InvalidArgumentError(f"owners must be an array, not {type(m['owners']).__name__}")
        return cls(tuple(m["owners"]))


@dataclass(frozen=True)
class ParticipantKeys:
    """A participant's public keys: Ed25519 (``signing_key``) and X25519 (``hpke_key``), raw."""

    signing_key: bytes
    hpke_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "signing_key", require_bytes("signing_key", self.signing_key, KEY_SIZE))
        object.__setattr__(self, "hpke_key", require_bytes("hpke_key", self.hpke_key, KEY_SIZE))

    @property
    def party_id(self) -> bytes:
        return hashlib.sha256(self.signing_key).digest()

    def _encode(self) -> dict[str, Any]:
        return {"signing_key": self.signing_key, "hpke_key": self.hpke_key}

    @classmethod
    def _decode(cls, value: object) -> ParticipantKeys:
        m = _fields(value, ("signing_key", "hpke_key"))
        return cls(m["signing_key"], m["hpke_key"])


@dataclass(frozen=True)
class EnclaveRequirement:
    """An enclave the task may run in: one build (``mrenclave``), or a signer's product from a version on."""

    mrenclave: bytes | None = None
    mrsigner: bytes | None = None
    product_id: int | None = None
    min_security_version: int = 0

    def __post_init__(self) -> None:
        if self.mrenclave is not None:
            object.__setattr__(self, "mrenclave", require_bytes("mrenclave", self.mrenclave, HASH_SIZE))
            if self.mrsigner is not None or self.product_id is not None or self.min_security_version != 0:
                raise InvalidArgumentError(
                    "an enclave requirement names mrenclave alone, or mrsigner with product_id and min_security_version"
                )
            return
        if self.mrsigner is None or self.product_id is None:
            raise InvalidArgumentError("an enclave requirement needs mrenclave, or mrsigner with product_id")
        object.__setattr__(self, "mrsigner", require_bytes("mrsigner", self.mrsigner, HASH_SIZE))
        _int("product_id", self.product_id, 0, _U16_MAX)
        _int("min_security_version", self.min_security_version, 0, _U16_MAX)

    def failure(self, claims: VerifiedClaims) -> tuple[Status, str] | None:
        """Why the attested enclave does not meet this requirement (the status and a message), or None."""
        if self.mrenclave is not None:
            if claims.mrenclave != self.mrenclave:
                return Status.MRENCLAVE_MISMATCH, (
                    f"mrenclave {_short(claims.mrenclave)} is not the required {_short(self.mrenclave)}"
                )
            return None
        if claims.debug:
            return Status.DEBUG_NOT_ALLOWED, "a debug enclave is only accepted by its exact mrenclave"
        if claims.mrsigner != self.mrsigner:
            assert self.mrsigner is not None
            return Status.MRSIGNER_MISMATCH, (
                f"mrsigner {_short(claims.mrsigner)} is not the required {_short(self.mrsigner)}"
            )
        if claims.product_id != self.product_id:
            return Status.PRODUCT_ID_MISMATCH, f"product_id {claims.product_id} is not the required {self.product_id}"
        if claims.security_version < self.min_security_version:
            return Status.SECURITY_VERSION_TOO_LOW, (
                f"security version {claims.security_version} is below the required {self.min_security_version}"
            )
        return None

    def _encode(self) -> dict[str, Any]:
        if self.mrenclave is not None:
            return {"mrenclave": self.mrenclave}
        return {
            "mrsigner": self.mrsigner,
            "product_id": self.product_id,
            "min_security_version": self.min_security_version,
        }

    @classmethod
    def _decode(cls, value: object) -> EnclaveRequirement:
        m = _mapping("value", value)
        if "mrenclave" in m:
            m = _fields(m, ("mrenclave",))
            return cls(mrenclave=m["mrenclave"])
        m = _fields(m, ("mrsigner", "product_id", "min_security_version"))
        return cls(mrsigner=m["mrsigner"], product_id=m["product_id"], min_security_version=m["min_security_version"])


# --------------------------------------------------------------------------- manifest


_MANIFEST_FIELDS = (
    "version",
    "task_id",
    "creator",
    "function",
    "arguments",
    "inputs",
    "outputs",
    "participants",
    "enclaves",
    "expires_at",
)


@dataclass(frozen=True)
class Manifest:
    """What a task computes, on whose data, for whom, in which enclaves, until when.

    Mappings are stored read-only in canonical key order; ``arguments`` is a
    read-only copy (mappings read-only, arrays as tuples). ``participants`` is
    keyed by party id (bytes); the encoding keys it by lowercase hex.
    """

    task_id: bytes
    creator: bytes
    function: FunctionRef
    arguments: Mapping[str, Any]
    inputs: Mapping[str, InputSlot]
    outputs: Mapping[str, OutputSlot]
    participants: Mapping[bytes, ParticipantKeys]
    enclaves: tuple[EnclaveRequirement, ...]
    expires_at: int
    _encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "task_id", require_bytes("task_id", self.task_id, TASK_ID_SIZE))
        set_(self, "creator", _party_id("creator", self.creator))
        if not isinstance(self.function, FunctionRef):
            raise InvalidArgumentError(f"function must be a FunctionRef, not {type(self.function).__name__}")
        arguments = _mapping("arguments", self.arguments)
        try:
            canonical.encode(arguments)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"arguments: {exc}") from None
        set_(self, "arguments", _freeze(arguments))
        set_(self, "inputs", _slot_map("inputs", self.inputs, InputSlot, MAX_INPUTS))
        set_(self, "outputs", _slot_map("outputs", self.outputs, OutputSlot, MAX_OUTPUTS))

        participants = _mapping("participants", self.participants)
        if len(participants) > MAX_PARTICIPANTS:
            raise InvalidArgumentError(
                f"participants: {len(participants)} parties exceed the limit of {MAX_PARTICIPANTS}"
            )
        checked = {}
        for party_id, keys in participants.items():
            party_id = _party_id("participants key", party_id)
            if not isinstance(keys, ParticipantKeys):
                raise InvalidArgumentError(
                    f"participants[{party_id.hex()}] must be ParticipantKeys, not {type(keys).__name__}"
                )
            if keys.party_id != party_id:
                raise InvalidArgumentError(
                    f"participants[{party_id.hex()}]: the id is not the SHA-256 of its signing_key"
                )
            checked[party_id] = keys
        set_(self, "participants", _sorted_map(checked.items(), lambda party_id: party_id))
        roles = self.roles()
        for party_id, role in roles.items():
            if party_id not in checked:
                raise InvalidArgumentError(f"participants: missing the {role} {party_id.hex()}")
        for party_id in checked:
            if party_id not in roles:
                raise InvalidArgumentError(f"participants: {party_id.hex()} has no role in the task")

        enclaves = self.enclaves
        if isinstance(enclaves, EnclaveRequirement) or not isinstance(enclaves, Iterable):
            raise InvalidArgumentError("enclaves must be a sequence of EnclaveRequirement")
        enclaves = tuple(enclaves)
        if not 1 <= len(enclaves) <= MAX_ENCLAVES:
            raise InvalidArgumentError(f"enclaves must name 1..{MAX_ENCLAVES} enclaves, got {len(enclaves)}")
        for i, requirement in enumerate(enclaves):
            if not isinstance(requirement, EnclaveRequirement):
                raise InvalidArgumentError(
                    f"enclaves[{i}] must be an EnclaveRequirement, not {type(requirement).__name__}"
                )
        set_(self, "enclaves", enclaves)
        _int("expires_at", self.expires_at, _I64_MIN, _I64_MAX)
        set_(self, "_encoded", canonical.encode(self._encode()))

    def roles(self) -> dict[bytes, str]:
        """Every party the task involves, with one of its roles (for messages)."""
        return _roles(self.creator, self.function, self.inputs, self.outputs)

    def _encode(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "task_id": self.task_id,
            "creator": self.creator,
            "function": self.function._encode(),
            "arguments": self.arguments,
            "inputs": {slot: input_._encode() for slot, input_ in self.inputs.items()},
            "outputs": {slot: output._encode() for slot, output in self.outputs.items()},
            "participants": {party_id.hex(): keys._encode() for party_id, keys in self.participants.items()},
            "enclaves": [requirement._encode() for requirement in self.enclaves],
            "expires_at": self.expires_at,
        }

    def to_bytes(self) -> bytes:
        """The canonical encoding (computed once, when the manifest was made)."""
        return self._encoded

    @property
    def hash(self) -> bytes:
        """``manifest_hash``: SHA-256 of the canonical encoding."""
        return hashlib.sha256(self._encoded).digest()

    def __hash__(self) -> int:
        return hash(self._encoded)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) > self.expires_at

    def check_enclave(self, claims: VerifiedClaims) -> None:
        """Raise ``AttestationError`` unless the attested enclave meets one of the manifest's requirements."""
        if not isinstance(claims, VerifiedClaims):
            raise InvalidArgumentError(f"enclave must be VerifiedClaims, not {type(claims).__name__}")
        first: tuple[Status, str] | None = None
        for requirement in self.enclaves:
            failure = requirement.failure(claims)
            if failure is None:
                return
            first = first or failure
        assert first is not None  # a manifest names at least one enclave
        status, reason = first
        more = f" (and {len(self.enclaves) - 1} other requirement(s) not met)" if len(self.enclaves) > 1 else ""
        raise AttestationError(f"the enclave meets none of the manifest's requirements: {reason}{more}", status)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_MANIFEST_SIZE) -> Manifest:
        """Parse a manifest strictly: canonical form, exact fields and types, every rule of the spec."""
        value = canonical.decode(data, max_size=max_size)

        def build() -> Manifest:
            m = _fields(value, _MANIFEST_FIELDS)
            version = _int("version", m["version"], 0, _U64_MAX)
            if version != MANIFEST_VERSION:
                raise InvalidArgumentError(f"version: unsupported version {version} (expected {MANIFEST_VERSION})")
            inputs = _decode_slots("inputs", m["inputs"], InputSlot._decode, MAX_INPUTS)
            outputs = _decode_slots("outputs", m["outputs"], OutputSlot._decode, MAX_OUTPUTS)
            participants = {}
            for key, item in _mapping("participants", m["participants"]).items():
                party_id = _hex_id("participants", key)
                participants[party_id] = _within(f"participants[{key}]", lambda v=item: ParticipantKeys._decode(v))
            enclaves = m["enclaves"]
            if not isinstance(enclaves, list):
                raise InvalidArgumentError(f"enclaves must be an array, not {type(enclaves).__name__}")
            return cls(
                task_id=m["task_id"],
                creator=m["creator"],
                function=_within("function", lambda: FunctionRef._decode(m["function"])),
                arguments=m["arguments"],
                inputs=inputs,
                outputs=outputs,
                participants=participants,
                enclaves=tuple(
                    _within(f"enclaves[{i}]", lambda v=item: EnclaveRequirement._decode(v))
                    for i, item in enumerate(enclaves)
                ),
                expires_at=m["expires_at"],
            )

        manifest = _parse("manifest", build)
        if manifest.to_bytes() != bytes(data):  # cannot differ for canonical input with exact fields; kept as a guard
            raise FormatError("manifest: does not re-encode to the same bytes")
        return manifest

    @classmethod
    def create(
        cls,
        *,
        creator: PartyKeys,
        function: FunctionRef,
        enclaves: Iterable[EnclaveRequirement] | EnclaveRequirement,
        parties: Iterable[PartyKeys] = (),
        inputs: Mapping[str, InputSlot] | None = None,
        outputs: Mapping[str, Iterable[bytes | PartyKeys]] | None = None,
        arguments: Mapping[str, Any] | None = None,
        expires_at: int | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        task_id: bytes | None = None,
    ) -> Manifest:
        """A new manifest with a random ``task_id``.

        ``participants`` is computed from the roles (creator, input owners,
        output owners, function owner), each looked up among ``creator`` and
        ``parties`` by party id; identities without a role are ignored.
        Output owners may be given as party ids or identities, in any order.
        ``expires_at`` defaults to now + ``lifetime`` seconds.
        """
        known: dict[bytes, ParticipantKeys] = {}
        for identity in (creator, *parties):
            try:
                keys = ParticipantKeys(identity.signing_key, identity.hpke_key)
                party_id = _party_id("party_id", identity.party_id)
            except AttributeError:
                raise InvalidArgumentError(
                    f"parties must be identities (party_id, signing_key, hpke_key), not {type(identity).__name__}"
                ) from None
            if keys.party_id != party_id:
                raise InvalidArgumentError(f"identity {party_id.hex()}: the id is not the SHA-256 of its signing key")
            known[party_id] = keys
        output_slots = {}
        for slot, owners in (outputs or {}).items():
            if isinstance(owners, bytes | bytearray | str) or not isinstance(owners, Iterable):
                raise InvalidArgumentError(f"outputs[{slot!r}] must be a collection of owners")
            ids = {_party_id(f"outputs[{slot!r}] owner", getattr(owner, "party_id", owner)) for owner in owners}
            output_slots[slot] = OutputSlot(tuple(sorted(ids)))
        if isinstance(enclaves, EnclaveRequirement):
            enclaves = (enclaves,)
        if expires_at is None:
            expires_at = int(time.time()) + _int("lifetime", lifetime, 0, _I64_MAX)
        if not isinstance(function, FunctionRef):
            raise InvalidArgumentError(f"function must be a FunctionRef, not {type(function).__name__}")
        input_slots = _slot_map("inputs", inputs or {}, InputSlot, MAX_INPUTS)
        creator_id = _party_id("creator", creator.party_id)
        participants = {}
        for party_id, role in _roles(creator_id, function, input_slots, output_slots).items():
            if party_id not in known:
                raise InvalidArgumentError(f"no identity given for the {role} {party_id.hex()}")
            participants[party_id] = known[party_id]
        return cls(
            task_id=os.urandom(TASK_ID_SIZE) if task_id is None else task_id,
            creator=creator_id,
            function=function,
            arguments=dict(arguments or {}),
            inputs=input_slots,
            outputs=output_slots,
            participants=participants,
            enclaves=tuple(enclaves),
            expires_at=expires_at,
        )


def verify_approval(manifest: Manifest, party_id: bytes, signature: bytes) -> None:
    """Raise ``CryptoError`` unless ``signature`` is the participant's approval of ``manifest``."""
    party_id = _party_id("party_id", party_id)
    keys = manifest.participants.get(party_id)
    if keys is None:
        raise InvalidArgumentError(f"{party_id.hex()} is not a participant of the task")
    try:
        Ed25519PublicKey.from_public_bytes(keys.signing_key).verify(
            require_bytes("signature", signature), approval_message(manifest.hash)
        )
    except (InvalidSignature, ValueError):
        raise CryptoError(f"the approval of {party_id.hex()} does not verify for this manifest") from None


# --------------------------------------------------------------------------- invocation


RETURN_VALUE_BUCKET = 256


def pad_return_value(value: bytes) -> bytes:
    """u32 big-endian length ‖ value ‖ zeros to a multiple of 256 bytes: its ciphertext's length hides the value's."""
    value = require_bytes("return value", value)
    padded = len(value).to_bytes(4, "big") + value
    return padded + bytes(-len(padded) % RETURN_VALUE_BUCKET)


def unpad_return_value(padded: bytes) -> bytes:
    """The value inside a padded return value; FormatError unless the padding is exactly as the enclave writes it."""
    if len(padded) < 4 or len(padded) % RETURN_VALUE_BUCKET:
        raise FormatError(f"return value: {len(padded)} bytes is not a multiple of {RETURN_VALUE_BUCKET}")
    size = int.from_bytes(padded[:4], "big")
    if size > len(padded) - 4 or any(padded[4 + size :]) or len(padded) - 4 - size >= RETURN_VALUE_BUCKET:
        raise FormatError("return value: its length or padding is malformed")
    return padded[4 : 4 + size]


def encode_invocation(
    manifest_bytes: bytes,
    approvals: Mapping[bytes, bytes],
    grants: Mapping[str, bytes],
    inputs: Mapping[str, bytes],
    now: int,
) -> bytes:
    """The invocation (host → enclave): the manifest's exact bytes, approvals, grants, input files, host time.

    Only types and sizes are checked here: the enclave checks the content.
    """
    approvals_ = {}
    for party_id, signature in _mapping("approvals", approvals).items():
        approvals_[_party_id("approvals key", party_id).hex()] = require_bytes("approval", signature, SIGNATURE_SIZE)
    grants_ = {
        _str("grants key", slot): require_bytes(f"grants[{slot!r}]", c)
        for slot, c in _mapping("grants", grants).items()
    }
    inputs_ = {
        _str("inputs key", slot): require_bytes(f"inputs[{slot!r}]", f)
        for slot, f in _mapping("inputs", inputs).items()
    }
    return canonical.encode(
        {
            "manifest": require_bytes("manifest_bytes", manifest_bytes),
            "approvals": approvals_,
            "grants": grants_,
            "inputs": inputs_,
            "now": _int("now", now, _I64_MIN, _I64_MAX),
        }
    )


# --------------------------------------------------------------------------- receipt and result


@dataclass(frozen=True)
class EnclaveMeasurement:
    """The enclave a receipt says ran the task."""

    mrenclave: bytes
    mrsigner: bytes
    product_id: int
    security_version: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "mrenclave", require_bytes("enclave.mrenclave", self.mrenclave, HASH_SIZE))
        object.__setattr__(self, "mrsigner", require_bytes("enclave.mrsigner", self.mrsigner, HASH_SIZE))
        _int("enclave.product_id", self.product_id, 0, _U16_MAX)
        _int("enclave.security_version", self.security_version, 0, _U16_MAX)

    @classmethod
    def of(cls, claims: VerifiedClaims) -> EnclaveMeasurement:
        return cls(claims.mrenclave, claims.mrsigner, claims.product_id, claims.security_version)

    def _encode(self) -> dict[str, Any]:
        return {
            "mrenclave": self.mrenclave,
            "mrsigner": self.mrsigner,
            "product_id": self.product_id,
            "security_version": self.security_version,
        }


_MEASUREMENT_FIELDS = ("mrenclave", "mrsigner", "product_id", "security_version")


def _digest_map(path: str, value: object, key: Callable[[str, object], T]) -> MappingProxyType[T, bytes]:
    out = {key(path, k): require_bytes(f"{path}[{k!s:.64}]", v, HASH_SIZE) for k, v in _mapping(path, value).items()}
    return MappingProxyType(out)


@dataclass(frozen=True)
class Receipt:
    """What the enclave signs: the task (manifest hash) and the SHA-256 of everything it returned."""

    manifest_hash: bytes
    outputs: Mapping[str, bytes]
    return_value: Mapping[bytes, bytes]
    enclave: EnclaveMeasurement
    status: str = STATUS_OK

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest_hash", require_bytes("manifest_hash", self.manifest_hash, HASH_SIZE))
        object.__setattr__(self, "outputs", _digest_map("outputs", self.outputs, check_slot))
        object.__setattr__(self, "return_value", _digest_map("return_value", self.return_value, _party_id))
        if not isinstance(self.enclave, EnclaveMeasurement):
            raise InvalidArgumentError(f"enclave must be an EnclaveMeasurement, not {type(self.enclave).__name__}")
        if self.status != STATUS_OK:
            raise InvalidArgumentError(f"status: {str(self.status)[:64]!r} (a receipt's status is {STATUS_OK!r})")

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "version": RECEIPT_VERSION,
                "manifest_hash": self.manifest_hash,
                "status": self.status,
                "outputs": dict(self.outputs),
                "return_value": {party_id.hex(): digest for party_id, digest in self.return_value.items()},
                "enclave": self.enclave._encode(),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_RECEIPT_SIZE) -> Receipt:
        value = canonical.decode(data, max_size=max_size)

        def build() -> Receipt:
            m = _fields(value, ("version", "manifest_hash", "status", "outputs", "return_value", "enclave"))
            version = _int("version", m["version"], 0, _U64_MAX)
            if version != RECEIPT_VERSION:
                raise InvalidArgumentError(f"version: unsupported version {version} (expected {RECEIPT_VERSION})")
            e = _within("enclave", lambda: _fields(m["enclave"], _MEASUREMENT_FIELDS))
            return cls(
                manifest_hash=m["manifest_hash"],
                outputs=m["outputs"],
                return_value=_digest_map("return_value", m["return_value"], _hex_id),
                enclave=EnclaveMeasurement(e["mrenclave"], e["mrsigner"], e["product_id"], e["security_version"]),
                status=_str("status", m["status"]),
            )

        return _parse("receipt", build)


def _sealed_map(path: str, value: object) -> MappingProxyType[bytes, bytes]:
    """Party id → HPKE ciphertext (sealed keys, return values)."""
    return MappingProxyType(
        {_party_id(f"{path} key", k): require_bytes(f"{path}[{k.hex()}]", v) for k, v in _mapping(path, value).items()}
    )


def _sealed_to_hex(value: Mapping[bytes, bytes]) -> dict[str, bytes]:
    return {k.hex(): v for k, v in value.items()}


def _sealed_from_hex(path: str, value: object) -> dict[bytes, object]:
    return {_hex_id(path, k): v for k, v in _mapping(path, value).items()}


@dataclass(frozen=True)
class OutputFile:
    """An output: its ``MTEF`` file and its file key sealed to each owner (party id → HPKE ciphertext)."""

    file: bytes = field(repr=False)
    keys: Mapping[bytes, bytes]

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", require_bytes("file", self.file))
        object.__setattr__(self, "keys", _sealed_map("keys", self.keys))

    def _encode(self) -> dict[str, Any]:
        return {"file": self.file, "keys": _sealed_to_hex(self.keys)}

    @classmethod
    def _decode(cls, value: object) -> OutputFile:
        o = _fields(value, ("file", "keys"))
        return cls(o["file"], _sealed_from_hex("keys", o["keys"]))


@dataclass(frozen=True)
class OutputInfo:
    """An output as a result's head describes it: the size of its ``MTEF`` file and its sealed file keys."""

    size: int
    keys: Mapping[bytes, bytes]

    def __post_init__(self) -> None:
        _int("size", self.size, 0, _I64_MAX)
        object.__setattr__(self, "keys", _sealed_map("keys", self.keys))

    def _encode(self) -> dict[str, Any]:
        return {"size": self.size, "keys": _sealed_to_hex(self.keys)}

    @classmethod
    def _decode(cls, value: object) -> OutputInfo:
        o = _fields(value, ("size", "keys"))
        return cls(o["size"], _sealed_from_hex("keys", o["keys"]))


_Output = TypeVar("_Output", OutputFile, OutputInfo)
_Signed = TypeVar("_Signed", bound="_SignedOutputs[Any]")


@dataclass(frozen=True)
class _SignedOutputs(Generic[_Output]):
    """The signed receipt, the outputs (``_OUTPUT``: files, or only their sizes) and the sealed return values: the
    one layout of :class:`TaskResult` and :class:`ResultHead`."""

    _OUTPUT: ClassVar[type]
    _WHAT: ClassVar[str]

    receipt_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    outputs: Mapping[str, _Output]
    return_value: Mapping[bytes, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "receipt_bytes", require_bytes("receipt", self.receipt_bytes))
        object.__setattr__(self, "signature", require_bytes("signature", self.signature, SIGNATURE_SIZE))
        outputs = _mapping("outputs", self.outputs)
        for slot, output in outputs.items():
            check_slot("outputs", slot)
            if not isinstance(output, self._OUTPUT):
                raise InvalidArgumentError(
                    f"outputs[{slot!r}] must be an {self._OUTPUT.__name__}, not {type(output).__name__}"
                )
        object.__setattr__(self, "outputs", MappingProxyType(dict(outputs)))
        object.__setattr__(self, "return_value", _sealed_map("return_value", self.return_value))

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "receipt": self.receipt_bytes,
                "signature": self.signature,
                "outputs": {slot: output._encode() for slot, output in self.outputs.items()},
                "return_value": _sealed_to_hex(self.return_value),
            }
        )

    @classmethod
    def from_bytes(
        cls: type[_Signed], data: bytes | bytearray | memoryview, *, max_size: int = MAX_RESULT_SIZE
    ) -> _Signed:
        """Parse one sent by a node (strictly: the node is untrusted). ``max_size`` bounds its encoding."""
        value = canonical.decode(data, max_size=max_size)

        def build() -> _Signed:
            m = _fields(value, ("receipt", "signature", "outputs", "return_value"))
            outputs = {
                slot: _within(f"outputs[{str(slot)[:64]!r}]", lambda item=item: cls._OUTPUT._decode(item))
                for slot, item in _mapping("outputs", m["outputs"]).items()
            }
            return cls(m["receipt"], m["signature"], outputs, _sealed_from_hex("return_value", m["return_value"]))

        return _parse(cls._WHAT, build)


@dataclass(frozen=True)
class ResultHead(_SignedOutputs[OutputInfo]):
    """A result without its output files: the signed receipt, each output's size and keys, the return values.

    What a party needs before it downloads an output (``docs/node.md``): the receipt holds each file's digest.
    """

    _OUTPUT = OutputInfo
    _WHAT = "result head"

    def verify(self, manifest_hash: bytes, enclave_signing_key: bytes | Ed25519PublicKey) -> Receipt:
        """Check everything but the output files against the task and the attested enclave; return the receipt.

        ``CryptoError`` when the signature does not verify under the enclave's
        key or a return value does not hash to the receipt's digest;
        ``FormatError`` when the receipt is malformed, is for another task, does
        not list an output the head names, or lists other recipients of the
        return value. Outputs the receipt lists may be missing: their owners may
        have deleted them from the node (see ``OpenedResult.missing``). Each
        output file is checked against ``receipt.outputs[slot]`` when it is read.
        """
        manifest_hash = require_bytes("manifest_hash", manifest_hash, HASH_SIZE)
        if isinstance(enclave_signing_key, Ed25519PublicKey):
            key = enclave_signing_key
        else:
            key = Ed25519PublicKey.from_public_bytes(
                require_bytes("enclave_signing_key", enclave_signing_key, KEY_SIZE)
            )
        try:
            key.verify(self.signature, receipt_message(self.receipt_bytes))
        except InvalidSignature:
            raise CryptoError("the receipt's signature does not verify under the enclave's signing key") from None
        receipt = Receipt.from_bytes(self.receipt_bytes)
        if receipt.manifest_hash != manifest_hash:
            raise FormatError(
                f"receipt is for another task (manifest hash {_short(receipt.manifest_hash)}, "
                f"expected {_short(manifest_hash)})"
            )
        # Outputs may be missing (their owners deleted them from the node); never one the receipt does not list.
        if not set(self.outputs) <= set(receipt.outputs):
            raise FormatError(
                f"the result's outputs {sorted(self.outputs)} are not among the receipt's {sorted(receipt.outputs)}"
            )
        if set(receipt.return_value) != set(self.return_value):
            raise FormatError("the result's return values are not addressed to the parties the receipt lists")
        for party_id, ciphertext in self.return_value.items():
            if hashlib.sha256(ciphertext).digest() != receipt.return_value[party_id]:
                raise CryptoError(
                    f"the return value for {party_id.hex()} does not hash to the receipt's digest (tampered or swapped)"
                )
        return receipt


@dataclass(frozen=True)
class TaskResult(_SignedOutputs[OutputFile]):
    """The enclave's result: the signed receipt, the output files and the sealed return values."""

    _OUTPUT = OutputFile
    _WHAT = "result"

    @property
    def head(self) -> ResultHead:
        """The result without its output files (their sizes instead)."""
        outputs = {slot: OutputInfo(len(output.file), output.keys) for slot, output in self.outputs.items()}
        return ResultHead(self.receipt_bytes, self.signature, outputs, self.return_value)

    def verify(self, manifest_hash: bytes, enclave_signing_key: bytes | Ed25519PublicKey) -> Receipt:
        """Check the result against the task and the attested enclave; return its receipt.

        :meth:`ResultHead.verify`, and ``CryptoError`` when a file does not hash to the receipt's digest.
        """
        receipt = self.head.verify(manifest_hash, enclave_signing_key)
        self.check_files(receipt)
        return receipt

    def check_files(self, receipt: Receipt) -> None:
        """``CryptoError`` unless every output file hashes to the digest of the (verified) ``receipt``."""
        for slot, output in self.outputs.items():
            if hashlib.sha256(output.file).digest() != receipt.outputs[slot]:
                raise CryptoError(f"output {slot!r} does not hash to the receipt's digest (tampered or swapped)")
