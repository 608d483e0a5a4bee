"""The one exception hierarchy of mesatee, and the status codes behind it.

The numbers mirror ``edl/mesatee_types.h`` (a test checks them against the
compiled library). This module imports nothing else of mesatee, so every layer
can raise these errors.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    BUFFER_TOO_SMALL = 2
    OUT_OF_MEMORY = 3
    INTERNAL = 4
    CRYPTO = 5
    BOUNDARY = 6
    FORMAT = 10
    PLATFORM = 20
    IMAGE_LOAD = 30
    IMAGE_MODIFIED = 31
    SIGNATURE_INVALID = 32
    SIGNATURE_MISMATCH = 33
    UNSEAL_FAILED = 40
    SEAL_VERSION = 41
    EVIDENCE_MALFORMED = 50
    PLATFORM_NOT_ALLOWED = 51
    UNTRUSTED_ROOT = 52
    CERTIFICATE_INVALID = 53
    REPORT_SIGNATURE_INVALID = 54
    CLAIMS_MISMATCH = 55
    NONCE_MISMATCH = 56
    MRENCLAVE_MISMATCH = 57
    MRSIGNER_MISMATCH = 58
    PRODUCT_ID_MISMATCH = 59
    SECURITY_VERSION_TOO_LOW = 60
    DEBUG_NOT_ALLOWED = 61
    UNSUPPORTED_PLATFORM = 62
    MANIFEST_INVALID = 70
    MANIFEST_EXPIRED = 71
    ENCLAVE_NOT_ACCEPTED = 72
    APPROVAL_MISSING = 73
    APPROVAL_INVALID = 74
    GRANT_INVALID = 75
    INPUT_MISMATCH = 76
    INPUT_INVALID = 77
    FUNCTION_UNKNOWN = 78
    ARGUMENT_INVALID = 79
    FUNCTION_FAILED = 80
    # 90-99: the node (Python only; never crosses the native boundary, so not in mesatee_types.h).
    NODE = 90
    REQUEST_REFUSED = 91
    POLICY_VIOLATION = 92
    NOT_FOUND = 93
    PERMISSION_DENIED = 94
    STORAGE_CORRUPTED = 95
    AUDIT_CHAIN_BROKEN = 96


#: Statuses raised by the node's Python code only; the native library never returns them.
PYTHON_ONLY_STATUSES = frozenset(s for s in Status if 90 <= s <= 99)


class MesateeError(Exception):
    """Root of every error mesatee raises; ``status`` says which check failed."""

    default_status = Status.INTERNAL

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = Status(status if status is not None else self.default_status)


class InvalidArgumentError(MesateeError, ValueError):
    default_status = Status.INVALID_ARGUMENT


class CryptoError(MesateeError):
    default_status = Status.CRYPTO


class BoundaryError(MesateeError):
    """A buffer was refused at the enclave boundary (EDL bridge)."""

    default_status = Status.BOUNDARY


class FormatError(MesateeError, ValueError):
    """Input that crossed a trust boundary is malformed."""

    default_status = Status.FORMAT


class PlatformError(MesateeError):
    """The platform folder is missing, unreadable or unsafe."""

    default_status = Status.PLATFORM


class EnclaveLoadError(MesateeError):
    """The enclave image or its signature file was refused."""

    default_status = Status.IMAGE_LOAD


class SealingError(MesateeError):
    """A sealed blob did not open (tampered, wrong AAD, other enclave or platform, newer version)."""

    default_status = Status.UNSEAL_FAILED


class AttestationError(MesateeError):
    """Evidence failed verification; ``status`` names the failed check."""

    default_status = Status.REPORT_SIGNATURE_INVALID


class EvidenceFormatError(AttestationError, FormatError):
    default_status = Status.EVIDENCE_MALFORMED


class TaskRefusedError(MesateeError):
    """The enclave refused a task; ``status`` names the check (approval, grant, input...) and nothing was output."""

    default_status = Status.MANIFEST_INVALID


class NodeError(MesateeError):
    """The node refused or failed a request (the node is untrusted: the enclave re-checks what matters)."""

    default_status = Status.NODE


class RequestError(NodeError):
    """A signed request was refused: unsigned, badly signed, unknown party, stale, replayed, or malformed.

    ``reason`` is a short machine-readable word (``"signature"``, ``"stale"``, ``"replayed"``...).
    """

    default_status = Status.REQUEST_REFUSED

    def __init__(self, message: str, status: Status | None = None, *, reason: str = "malformed") -> None:
        super().__init__(message, status)
        self.reason = reason


class TaskStateError(NodeError):
    """A task cannot move from its status to the one asked (``current``, ``target``: Teaclave status names)."""

    def __init__(self, message: str, status: Status | None = None, *, current: str = "", target: str = "") -> None:
        super().__init__(message, status)
        self.current = current
        self.target = target


class PolicyError(NodeError):
    """A task breaks a dataset's usage policy; ``rule`` names the rule and ``dataset_id`` the dataset."""

    default_status = Status.POLICY_VIOLATION

    def __init__(
        self, message: str, status: Status | None = None, *, rule: str = "", dataset_id: bytes | None = None
    ) -> None:
        super().__init__(message, status)
        self.rule = rule
        self.dataset_id = dataset_id


class NotFoundError(NodeError, LookupError):
    default_status = Status.NOT_FOUND


class PermissionDeniedError(NodeError):
    """The party may not do this (``rule`` names the access rule)."""

    default_status = Status.PERMISSION_DENIED

    def __init__(self, message: str, status: Status | None = None, *, rule: str = "") -> None:
        super().__init__(message, status)
        self.rule = rule


class StorageError(NodeError):
    """Stored data is damaged (a blob that does not hash to its id is reported, never served)."""

    default_status = Status.STORAGE_CORRUPTED


class AuditLogError(StorageError):
    """The audit log's hash chain is broken; ``seq`` is the first entry that does not verify."""

    default_status = Status.AUDIT_CHAIN_BROKEN

    def __init__(self, message: str, status: Status | None = None, *, seq: int | None = None) -> None:
        super().__init__(message, status)
        self.seq = seq


_CLASS_BY_STATUS: dict[Status, type[MesateeError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.CRYPTO: CryptoError,
    Status.BOUNDARY: BoundaryError,
    Status.FORMAT: FormatError,
    Status.PLATFORM: PlatformError,
    Status.IMAGE_LOAD: EnclaveLoadError,
    Status.IMAGE_MODIFIED: EnclaveLoadError,
    Status.SIGNATURE_INVALID: EnclaveLoadError,
    Status.SIGNATURE_MISMATCH: EnclaveLoadError,
    Status.UNSEAL_FAILED: SealingError,
    Status.SEAL_VERSION: SealingError,
    Status.EVIDENCE_MALFORMED: EvidenceFormatError,
    Status.NODE: NodeError,
    Status.REQUEST_REFUSED: RequestError,
    Status.POLICY_VIOLATION: PolicyError,
    Status.NOT_FOUND: NotFoundError,
    Status.PERMISSION_DENIED: PermissionDeniedError,
    Status.STORAGE_CORRUPTED: StorageError,
    Status.AUDIT_CHAIN_BROKEN: AuditLogError,
}


def error_for_status(status: int, message: str) -> MesateeError:
    """The exception for a status code (unknown codes become ``MesateeError``)."""
    try:
        known = Status(status)
    except ValueError:
        return MesateeError(f"{message} (unknown status {status})", Status.INTERNAL)
    if Status.PLATFORM_NOT_ALLOWED <= known <= Status.UNSUPPORTED_PLATFORM:
        return AttestationError(message, known)
    if Status.MANIFEST_INVALID <= known <= Status.FUNCTION_FAILED:
        return TaskRefusedError(message, known)
    return _CLASS_BY_STATUS.get(known, MesateeError)(message, known)
