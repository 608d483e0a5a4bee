"""Layer 3: the parties of a task — their keys, datasets, approvals, grants and results (pure Python)."""

from mesatee.parties.party import DatasetKey, OpenedResult, Party, PartyIdentity

__all__ = ["DatasetKey", "OpenedResult", "Party", "PartyIdentity"]
