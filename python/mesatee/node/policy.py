"""Usage policies and access rules: plain data, one evaluator each.

A data owner attaches a :class:`UsagePolicy` to a dataset: which functions may
read it, which parties may take part in a task that uses it, who may receive
its outputs, until when, how many times. Each restriction is optional (None:
no restriction). :func:`check_task` is the one evaluator: a task that breaks
any input's policy is refused at creation with a :class:`PolicyError` naming
the dataset and the rule.

:func:`authorize` is the one evaluator of who may do what with a task, an
output or a dataset (:data:`ACCESS_RULES`).

The node is untrusted: these rules serve honest operators and spare parties
useless work. What protects data is in the enclave (approvals and grants are
given per manifest by each owner); a policy is the owner's standing
instruction to the node about which manifests to let through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mesatee.core import canonical
from mesatee.core.binary import require_bytes
from mesatee.core.manifest import FunctionRef, Manifest
from mesatee.errors import FormatError, InvalidArgumentError, NotFoundError, PermissionDeniedError, PolicyError

__all__ = [
    "ACCESS_RULES",
    "MAX_POLICY_SIZE",
    "POLICY_VERSION",
    "RULES",
    "DatasetTerms",
    "FunctionRule",
    "UsagePolicy",
    "authorize",
    "check_task",
    "explain_access",
]

POLICY_VERSION = 1
MAX_POLICY_SIZE = 64 << 10
MAX_ENTRIES = 1024
_I64_MAX = 2**63 - 1

#: The usage rules, in the order check_task applies them to each input.
RULES = ("dataset", "owner", "function", "co_participants", "output_recipients", "expires_at", "max_uses")


def _short(party_id: bytes) -> str:
    return party_id[:4].hex() + "…"


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= _I64_MAX:
        raise InvalidArgumentError(f"{name} must be in {low}..{_I64_MAX}, got {value}")
    return int(value)


def _when(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"Unix time {t}"


# --------------------------------------------------------------------------- usage policy


@dataclass(frozen=True)
class FunctionRule:
    """A function a policy allows: by name, at one version or any (None), public (owner None) or one owner's."""

    name: str
    version: int | None = None
    owner: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgumentError("a function rule needs a non-empty name")
        if self.version is not None:
            _int("version", self.version, -(2**63))
        if self.owner is not None:
            object.__setattr__(self, "owner", require_bytes("owner", self.owner, 32))

    def matches(self, function: FunctionRef) -> bool:
        return (
            function.name == self.name
            and (self.version is None or function.version == self.version)
            and function.owner == self.owner
        )

    def describe(self) -> str:
        version = "any version" if self.version is None else f"version {self.version}"
        owner = "a public built-in" if self.owner is None else f"owned by {_short(self.owner)}"
        return f"{self.name} ({version}, {owner})"

    def _key(self) -> tuple[str, int, bytes]:
        return (self.name, -(2**63) - 1 if self.version is None else self.version, self.owner or b"")

    def _encode(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "owner": self.owner}


def _party_set(name: str, value: object) -> frozenset[bytes] | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | str) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{name} must be a collection of party ids")
    ids = [require_bytes(f"{name} entry", item, 32) for item in value]
    if len(ids) > MAX_ENTRIES:
        raise InvalidArgumentError(f"{name}: {len(ids)} entries exceed the limit of {MAX_ENTRIES}")
    return frozenset(ids)


@dataclass(frozen=True)
class UsagePolicy:
    """A dataset's usage policy; every field None means no restriction of that kind.

    - ``allowed_functions``: the functions that may read the dataset (names, or :class:`FunctionRule`);
    - ``allowed_co_participants``: the parties (ids) who may take part in a task with it, besides its owner;
    - ``allowed_output_recipients``: the parties who may own a task's outputs, besides the dataset's owner;
    - ``expires_at``: Unix time after which no task may use it, nor outlive it;
    - ``max_uses``: how many tasks may use it in all.
    """

    allowed_functions: tuple[FunctionRule, ...] | None = None
    allowed_co_participants: frozenset[bytes] | None = None
    allowed_output_recipients: frozenset[bytes] | None = None
    expires_at: int | None = None
    max_uses: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        functions = self.allowed_functions
        if functions is not None:
            if isinstance(functions, str | FunctionRule) or not isinstance(functions, Iterable):
                raise InvalidArgumentError("allowed_functions must be a collection of names or FunctionRule")
            rules = {rule if isinstance(rule, FunctionRule) else FunctionRule(rule) for rule in functions}
            if len(rules) > MAX_ENTRIES:
                raise InvalidArgumentError(f"allowed_functions: more than {MAX_ENTRIES} entries")
            set_(self, "allowed_functions", tuple(sorted(rules, key=FunctionRule._key)))
        set_(self, "allowed_co_participants", _party_set("allowed_co_participants", self.allowed_co_participants))
        set_(self, "allowed_output_recipients", _party_set("allowed_output_recipients", self.allowed_output_recipients))
        if self.expires_at is not None:
            _int("expires_at", self.expires_at, 0)
        if self.max_uses is not None:
            _int("max_uses", self.max_uses, 0)

    # ----------------------------------------------------------------------- storage

    def _encode(self) -> dict[str, Any]:
        def ids(value: frozenset[bytes] | None) -> list[bytes] | None:
            return None if value is None else sorted(value)

        return {
            "version": POLICY_VERSION,
            "allowed_functions": None
            if self.allowed_functions is None
            else [rule._encode() for rule in self.allowed_functions],
            "allowed_co_participants": ids(self.allowed_co_participants),
            "allowed_output_recipients": ids(self.allowed_output_recipients),
            "expires_at": self.expires_at,
            "max_uses": self.max_uses,
        }

    def to_bytes(self) -> bytes:
        """The canonical encoding (how the node stores and lists it)."""
        return canonical.encode(self._encode())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_POLICY_SIZE) -> UsagePolicy:
        """Parse strictly: exact fields and types, lists sorted and unique (one policy, one encoding)."""
        value = canonical.decode(data, max_size=max_size)
        fields = (
            "version",
            "allowed_functions",
            "allowed_co_participants",
            "allowed_output_recipients",
            "expires_at",
            "max_uses",
        )
        try:
            if not isinstance(value, dict) or set(value) != set(fields):
                raise InvalidArgumentError(f"a usage policy is a map of exactly {', '.join(fields)}")
            if value["version"] != POLICY_VERSION or isinstance(value["version"], bool):
                raise InvalidArgumentError(f"unsupported version {str(value['version'])[:20]!r}")
            functions = value["allowed_functions"]
            if functions is not None:
                if not isinstance(functions, list):
                    raise InvalidArgumentError("allowed_functions must be an array or nil")
                rules = []
                for item in functions:
                    if not isinstance(item, dict) or set(item) != {"name", "version", "owner"}:
                        raise InvalidArgumentError("a function rule is a map of name, version and owner")
                    rules.append(FunctionRule(item["name"], item["version"], item["owner"]))
                functions = tuple(rules)
            for key in ("allowed_co_participants", "allowed_output_recipients"):
                if value[key] is not None and not isinstance(value[key], list):
                    raise InvalidArgumentError(f"{key} must be an array or nil")
            policy = cls(
                allowed_functions=functions,
                allowed_co_participants=value["allowed_co_participants"],
                allowed_output_recipients=value["allowed_output_recipients"],
                expires_at=value["expires_at"],
                max_uses=value["max_uses"],
            )
        except InvalidArgumentError as exc:
            raise FormatError(f"usage policy: {exc}") from None
        if policy.to_bytes() != bytes(data):
            raise FormatError("usage policy: lists are not sorted and unique")
        return policy

    # ----------------------------------------------------------------------- explaining

    def explain(self) -> list[str]:
        """One line per rule, in plain words."""

        def parties(ids: frozenset[bytes]) -> str:
            return ", ".join(_short(p) for p in sorted(ids)) if ids else "nobody else"

        lines = []
        if self.allowed_functions is None:
            lines.append("function: any function may read this dataset")
        elif not self.allowed_functions:
            lines.append("function: no function may read this dataset")
        else:
            lines.append("function: only " + "; ".join(rule.describe() for rule in self.allowed_functions))
        if self.allowed_co_participants is None:
            lines.append("co_participants: any party may take part in a task using this dataset")
        else:
            lines.append(
                f"co_participants: besides the owner, only {parties(self.allowed_co_participants)} may take part"
            )
        if self.allowed_output_recipients is None:
            lines.append("output_recipients: any party may receive the outputs")
        else:
            lines.append(
                f"output_recipients: besides the owner, only {parties(self.allowed_output_recipients)} "
                "may receive the outputs"
            )
        if self.expires_at is None:
            lines.append("expires_at: never expires")
        else:
            lines.append(f"expires_at: no task may use it after {_when(self.expires_at)}, nor be valid longer")
        if self.max_uses is None:
            lines.append("max_uses: any number of tasks")
        else:
            lines.append(f"max_uses: at most {self.max_uses} task(s) in all")
        return lines


# --------------------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class DatasetTerms:
    """What the node knows of a dataset for its checks: its owner and its policy (None: no restriction)."""

    owner: bytes
    policy: UsagePolicy | None = None


def _refuse(dataset_id: bytes, rule: str, message: str) -> PolicyError:
    return PolicyError(
        f"the task breaks the usage policy of dataset {dataset_id.hex()}: rule {rule}: {message}",
        rule=rule,
        dataset_id=dataset_id,
    )


def check_task(
    manifest: Manifest,
    datasets: Mapping[bytes, DatasetTerms],
    uses_so_far: Mapping[bytes, int],
    now: int,
) -> None:
    """Raise ``PolicyError`` (naming the dataset and the rule) unless every input's policy allows the task.

    Inputs are checked in slot order and each dataset's rules in :data:`RULES`
    order, so the first broken rule is reported. A dataset used by several
    slots counts once. ``uses_so_far``: the tasks that already used each dataset.
    """
    if not isinstance(manifest, Manifest):
        raise InvalidArgumentError(f"manifest must be a Manifest, not {type(manifest).__name__}")
    recipients = {owner for output in manifest.outputs.values() for owner in output.owners}
    seen: set[bytes] = set()
    for slot, input_ in manifest.inputs.items():
        dataset_id = input_.dataset_id
        terms = datasets.get(dataset_id)
        if terms is None:
            raise _refuse(dataset_id, "dataset", f"input {slot!r} names a dataset this node does not hold")
        if terms.owner != input_.owner:
            raise _refuse(
                dataset_id,
                "owner",
                f"input {slot!r} names {_short(input_.owner)} as the owner, but the dataset is {_short(terms.owner)}'s",
            )
        if dataset_id in seen or terms.policy is None:
            seen.add(dataset_id)
            continue
        seen.add(dataset_id)
        policy = terms.policy
        function = manifest.function
        if policy.allowed_functions is not None and not any(r.matches(function) for r in policy.allowed_functions):
            owner = "public" if function.owner is None else f"owned by {_short(function.owner)}"
            raise _refuse(
                dataset_id, "function", f"function {function.name} version {function.version} ({owner}) is not allowed"
            )
        if policy.allowed_co_participants is not None:
            others = sorted(set(manifest.participants) - {terms.owner} - policy.allowed_co_participants)
            if others:
                raise _refuse(dataset_id, "co_participants", f"participant {_short(others[0])} is not allowed")
        if policy.allowed_output_recipients is not None:
            others = sorted(recipients - {terms.owner} - policy.allowed_output_recipients)
            if others:
                raise _refuse(dataset_id, "output_recipients", f"output owner {_short(others[0])} is not allowed")
        if policy.expires_at is not None:
            if now > policy.expires_at:
                raise _refuse(dataset_id, "expires_at", f"the policy expired at {_when(policy.expires_at)}")
            if manifest.expires_at > policy.expires_at:
                raise _refuse(
                    dataset_id,
                    "expires_at",
                    f"the task is valid until {_when(manifest.expires_at)}, after the policy expires "
                    f"({_when(policy.expires_at)})",
                )
        if policy.max_uses is not None:
            used = uses_so_far.get(dataset_id, 0)
            if used >= policy.max_uses:
                raise _refuse(dataset_id, "max_uses", f"already used by {used} task(s), the most allowed")


# --------------------------------------------------------------------------- access rules

#: Who may do what, by action (the actions of signed requests).
ACCESS_RULES: Mapping[str, str] = {
    "task.create": "any admitted party creates a task, naming itself as the creator",
    "task.view": "only a task's participants see it",
    "task.approve": "only a task's participants approve it",
    "task.invoke": "only a task's creator invokes it",
    "task.cancel": "only a task's creator cancels it",
    "input.assign": "only an input's owner assigns it (uploads its grant)",
    "output.fetch": "only an output's owners fetch it",
    "result.delete": "only an output's owners delete it",
    "dataset.upload": "any admitted party uploads a dataset, as its owner",
    "dataset.delete": "only a dataset's owner deletes it",
    "dataset.set_policy": "only a dataset's owner sets its policy",
}


def explain_access() -> list[str]:
    return [f"{action}: {rule}" for action, rule in ACCESS_RULES.items()]


def _deny(action: str, message: str) -> PermissionDeniedError:
    return PermissionDeniedError(f"{action} refused: {message} ({ACCESS_RULES[action]})", rule=action)


def authorize(
    action: str,
    party_id: bytes,
    *,
    admitted: bool,
    manifest: Manifest | None = None,
    slot: str | None = None,
    owner: bytes | None = None,
) -> None:
    """Raise ``PermissionDeniedError`` (``rule`` = the action) unless ``party_id`` may do ``action``.

    ``admitted``: whether the operator admitted the party (nobody else may do
    anything). Task actions need ``manifest``; ``input.assign``,
    ``output.fetch`` and ``result.delete`` also the ``slot``; dataset actions
    the dataset's ``owner``. A party outside the task is refused before the
    slot is looked at, so it learns nothing of the task's slots.
    """
    if action not in ACCESS_RULES:
        raise InvalidArgumentError(f"unknown action {str(action)[:64]!r}")
    party_id = require_bytes("party_id", party_id, 32)
    if admitted is not True:
        raise PermissionDeniedError(f"{action} refused: party {_short(party_id)} is not admitted", rule="admitted")
    if action == "dataset.upload":
        return
    if action.startswith("dataset."):
        if owner is None:
            raise InvalidArgumentError(f"{action} needs the dataset's owner")
        if require_bytes("owner", owner, 32) != party_id:
            raise _deny(action, f"party {_short(party_id)} does not own the dataset")
        return
    if not isinstance(manifest, Manifest):
        raise InvalidArgumentError(f"{action} needs the task's manifest")
    if action == "task.create":
        if manifest.creator != party_id:
            raise _deny(action, f"the manifest names {_short(manifest.creator)} as creator, not {_short(party_id)}")
        return
    if party_id not in manifest.participants:
        raise _deny(action, f"party {_short(party_id)} is not a participant of the task")
    if action in ("task.view", "task.approve"):
        return
    if action in ("task.invoke", "task.cancel"):
        if manifest.creator != party_id:
            raise _deny(action, f"party {_short(party_id)} is not the task's creator")
        return
    if slot is None:
        raise InvalidArgumentError(f"{action} needs a slot")
    if action == "input.assign":
        input_ = manifest.inputs.get(slot)
        if input_ is None:
            raise NotFoundError(f"the task has no input {str(slot)[:64]!r}")
        if input_.owner != party_id:
            raise _deny(action, f"party {_short(party_id)} does not own input {slot!r}")
        return
    output = manifest.outputs.get(slot)
    if output is None:
        raise NotFoundError(f"the task has no output {str(slot)[:64]!r}")
    if party_id not in output.owners:
        raise _deny(action, f"party {_short(party_id)} does not own output {slot!r}")
