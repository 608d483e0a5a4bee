"""Layer 4: the node — the untrusted host side that stores and schedules tasks for several parties.

The parts (the persistent scheduler comes later):

- :mod:`mesatee.node.blobs`: the content-addressed store of ciphertext, verified on every read;
- :mod:`mesatee.node.database`: the SQLite database, its schema and transactions;
- :mod:`mesatee.node.audit`: the hash-chained audit log;
- :mod:`mesatee.node.requests`: parties' signed requests and their verification;
- :mod:`mesatee.node.policy`: usage policies and access rules;
- :mod:`mesatee.node.node`: the ``Node`` facade that puts them together around an enclave.

The node is untrusted (``docs/design.md``): its checks are a service-level
convenience, and the enclave re-checks everything that protects data.
See ``docs/node.md``.
"""

from mesatee.errors import (
    AuditLogError,
    NodeError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    RequestError,
    StorageError,
    TaskStateError,
)
from mesatee.node.audit import AuditEntry, AuditHead, verify_audit_log
from mesatee.node.blobs import BlobStore
from mesatee.node.database import Database, PartyRecord
from mesatee.node.node import STATUSES, Node, TaskView
from mesatee.node.policy import (
    ACCESS_RULES,
    DatasetTerms,
    FunctionRule,
    UsagePolicy,
    authorize,
    check_task,
    explain_access,
)
from mesatee.node.requests import AcceptedRequest, RequestVerifier, SignedRequest, sign_request

__all__ = [
    "ACCESS_RULES",
    "AcceptedRequest",
    "AuditEntry",
    "AuditHead",
    "AuditLogError",
    "BlobStore",
    "Database",
    "DatasetTerms",
    "FunctionRule",
    "Node",
    "NodeError",
    "NotFoundError",
    "PartyRecord",
    "PermissionDeniedError",
    "PolicyError",
    "RequestError",
    "RequestVerifier",
    "STATUSES",
    "SignedRequest",
    "StorageError",
    "TaskStateError",
    "TaskView",
    "UsagePolicy",
    "authorize",
    "check_task",
    "explain_access",
    "sign_request",
    "verify_audit_log",
]
