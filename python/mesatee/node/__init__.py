"""Layer 4: the node — the untrusted host side that stores and schedules tasks for several parties.

The parts:

- :mod:`mesatee.node.blobs`: the content-addressed store of ciphertext, verified on every read;
- :mod:`mesatee.node.database`: the SQLite database, its schema and transactions;
- :mod:`mesatee.node.audit`: the hash-chained audit log;
- :mod:`mesatee.node.requests`: parties' signed requests and their verification;
- :mod:`mesatee.node.policy`: usage policies and access rules;
- :mod:`mesatee.node.lifecycle`: Teaclave's task statuses and their legal moves;
- :mod:`mesatee.node.scheduler`: the persistent queue and the pool of enclave workers;
- :mod:`mesatee.node.node`: the ``Node`` facade that puts them together around an enclave;
- :mod:`mesatee.node.client`: a party's ``Client`` of a node, in process or over the network.

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
from mesatee.node.client import Client, NodeAPI
from mesatee.node.database import Database, PartyRecord
from mesatee.node.lifecycle import STATUSES
from mesatee.node.node import DatasetView, Node, TaskView, invoke_options
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
from mesatee.node.scheduler import SchedulerConfig

__all__ = [
    "ACCESS_RULES",
    "AcceptedRequest",
    "AuditEntry",
    "AuditHead",
    "AuditLogError",
    "BlobStore",
    "Client",
    "Database",
    "DatasetTerms",
    "DatasetView",
    "FunctionRule",
    "Node",
    "NodeAPI",
    "NodeError",
    "NotFoundError",
    "PartyRecord",
    "PermissionDeniedError",
    "PolicyError",
    "RequestError",
    "RequestVerifier",
    "STATUSES",
    "SchedulerConfig",
    "SignedRequest",
    "StorageError",
    "TaskStateError",
    "TaskView",
    "UsagePolicy",
    "authorize",
    "check_task",
    "explain_access",
    "invoke_options",
    "sign_request",
    "verify_audit_log",
]
