"""mesatee: universal secure computing in a trusted execution environment.

Importing the package loads no native code: names that need the enclave
library (``Enclave``) load it on first use, so a data owner's laptop can use
the pure-Python parts (evidence verification, parties) without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mesatee.errors import (
    AttestationError,
    BoundaryError,
    CryptoError,
    EnclaveLoadError,
    EvidenceFormatError,
    FormatError,
    InvalidArgumentError,
    MesateeError,
    PlatformError,
    SealingError,
    Status,
    TaskRefusedError,
)

__version__ = "0.1.0"

_LAZY = {
    "AttestationPolicy": "mesatee.core.attestation",
    "VerifiedClaims": "mesatee.core.attestation",
    "verify_evidence": "mesatee.core.attestation",
    "Enclave": "mesatee.core.enclave",
    "EnclaveIdentity": "mesatee.core.enclave",
    "PublicKeys": "mesatee.core.enclave",
    "platform_root_certificate": "mesatee.core.enclave",
    "functions": "mesatee.core.enclave",
    "cmake_dir": "mesatee.core.enclave",
    "get_include": "mesatee.core.enclave",
    "FunctionDeclaration": "mesatee.core.functions",
    "Party": "mesatee.parties",
    "PartyIdentity": "mesatee.parties",
    "Manifest": "mesatee.core.manifest",
    "Node": "mesatee.node",
    "Client": "mesatee.node",
}

if TYPE_CHECKING:
    from mesatee.core.attestation import AttestationPolicy, VerifiedClaims, verify_evidence
    from mesatee.core.enclave import (
        Enclave,
        EnclaveIdentity,
        PublicKeys,
        cmake_dir,
        functions,
        get_include,
        platform_root_certificate,
    )
    from mesatee.core.functions import FunctionDeclaration
    from mesatee.core.manifest import Manifest
    from mesatee.node import Client, Node
    from mesatee.parties import Party, PartyIdentity


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesatee' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AttestationError",
    "AttestationPolicy",
    "BoundaryError",
    "Client",
    "CryptoError",
    "Enclave",
    "EnclaveIdentity",
    "EnclaveLoadError",
    "EvidenceFormatError",
    "FunctionDeclaration",
    "Manifest",
    "Party",
    "PartyIdentity",
    "FormatError",
    "InvalidArgumentError",
    "MesateeError",
    "Node",
    "PlatformError",
    "PublicKeys",
    "SealingError",
    "Status",
    "TaskRefusedError",
    "VerifiedClaims",
    "cmake_dir",
    "functions",
    "get_include",
    "platform_root_certificate",
    "verify_evidence",
]
