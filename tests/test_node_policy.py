"""Usage policies (plain data, one evaluator) and the access rules, rule by rule."""

from __future__ import annotations

import pytest

from mesatee.core import canonical
from mesatee.core.manifest import EnclaveRequirement, FunctionRef, InputSlot, Manifest
from mesatee.errors import FormatError, InvalidArgumentError, NotFoundError, PermissionDeniedError, PolicyError
from mesatee.node.policy import (
    ACCESS_RULES,
    RULES,
    DatasetTerms,
    FunctionRule,
    UsagePolicy,
    authorize,
    check_task,
    explain_access,
)
from mesatee.parties import Party

NOW = 1_800_000_000
D1, D2 = b"\x01" * 32, b"\x02" * 32


@pytest.fixture(scope="module")
def parties() -> dict[str, Party]:
    return {name: Party.generate() for name in ("alice", "bob", "carol", "dave")}


def _manifest(
    parties: dict[str, Party],
    *,
    creator: str = "alice",
    function: FunctionRef | None = None,
    outputs: dict[str, list[str]] | None = None,
    extra_inputs: dict[str, InputSlot] | None = None,
    expires_at: int = NOW + 3600,
) -> Manifest:
    p = parties
    inputs = {"a": InputSlot(p["alice"].party_id, D1), "b": InputSlot(p["bob"].party_id, D2)}
    inputs.update(extra_inputs or {})
    outputs = outputs if outputs is not None else {"out_a": ["alice"], "out_b": ["bob"]}
    return Manifest.create(
        creator=p[creator].identity,
        function=function or FunctionRef("ordered_set_intersect", 1),
        enclaves=[EnclaveRequirement(mrenclave=bytes(32))],
        parties=[party.identity for party in p.values()],
        inputs=inputs,
        outputs={slot: [p[name].identity for name in owners] for slot, owners in outputs.items()},
        expires_at=expires_at,
    )


def _terms(parties: dict[str, Party], alice_policy: UsagePolicy | None = None) -> dict[bytes, DatasetTerms]:
    return {
        D1: DatasetTerms(parties["alice"].party_id, alice_policy),
        D2: DatasetTerms(parties["bob"].party_id, None),
    }


def _broken(parties: dict[str, Party], manifest: Manifest, policy: UsagePolicy, uses: int = 0) -> str:
    with pytest.raises(PolicyError) as exc:
        check_task(manifest, _terms(parties, policy), {D1: uses}, NOW)
    assert exc.value.dataset_id == D1 and exc.value.status == 92
    assert D1.hex() in str(exc.value) and f"rule {exc.value.rule}" in str(exc.value)
    return exc.value.rule


# --------------------------------------------------------------------------- plain data


def test_no_policy_and_an_empty_policy_restrict_nothing(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    check_task(manifest, _terms(parties), {}, NOW)
    check_task(manifest, _terms(parties, UsagePolicy()), {D1: 10**9}, NOW)


def test_policies_round_trip_through_their_canonical_encoding(parties: dict[str, Party]) -> None:
    bob, carol = parties["bob"].party_id, parties["carol"].party_id
    policy = UsagePolicy(
        allowed_functions=["psi", FunctionRule("sum", 2), FunctionRule("mine", None, carol)],
        allowed_co_participants={carol, bob},
        allowed_output_recipients=[bob],
        expires_at=NOW,
        max_uses=3,
    )
    data = policy.to_bytes()
    assert UsagePolicy.from_bytes(data) == policy
    value = canonical.decode(data, max_size=len(data))
    assert value["allowed_co_participants"] == sorted([bob, carol])
    assert [f["name"] for f in value["allowed_functions"]] == ["mine", "psi", "sum"]
    assert UsagePolicy.from_bytes(UsagePolicy().to_bytes()) == UsagePolicy()
    assert canonical.decode(UsagePolicy().to_bytes(), max_size=200) == {
        "version": 1,
        "allowed_functions": None,
        "allowed_co_participants": None,
        "allowed_output_recipients": None,
        "expires_at": None,
        "max_uses": None,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"extra": None},
        {"max_uses": -1},
        {"max_uses": True},
        {"expires_at": "soon"},
        {"allowed_functions": "psi"},
        {"allowed_functions": [{"name": "psi"}]},
        {"allowed_functions": [{"name": "", "version": None, "owner": None}]},
        {"allowed_co_participants": [b"short"]},
        {"allowed_co_participants": [b"\x02" * 32, b"\x01" * 32]},  # unsorted
        {"allowed_output_recipients": [b"\x01" * 32, b"\x01" * 32]},  # duplicate
    ],
)
def test_malformed_stored_policies_are_refused(change: dict[str, object]) -> None:
    value = canonical.decode(UsagePolicy().to_bytes(), max_size=200) | change
    with pytest.raises(FormatError):
        UsagePolicy.from_bytes(canonical.encode(value))


def test_truncated_and_oversized_policies_are_refused() -> None:
    data = UsagePolicy(max_uses=1).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            UsagePolicy.from_bytes(data[:cut])
    with pytest.raises(FormatError):
        UsagePolicy.from_bytes(data, max_size=len(data) - 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_functions": "psi"},
        {"allowed_functions": [5]},
        {"allowed_co_participants": b"\x01" * 32},
        {"allowed_output_recipients": [b"x"]},
        {"expires_at": -1},
        {"max_uses": 1.0},
    ],
)
def test_bad_policies_are_refused_when_made(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        UsagePolicy(**kwargs)  # type: ignore[arg-type]


def test_explain_gives_one_line_per_rule(parties: dict[str, Party]) -> None:
    open_lines = UsagePolicy().explain()
    assert [line.split(":")[0] for line in open_lines] == list(RULES[2:])
    assert "any function" in open_lines[0] and "never" in open_lines[3]
    bob = parties["bob"].party_id
    lines = UsagePolicy(
        allowed_functions=[FunctionRule("psi", 1)],
        allowed_co_participants=[bob],
        allowed_output_recipients=[],
        expires_at=0,
        max_uses=2,
    ).explain()
    assert lines == [
        "function: only psi (version 1, a public built-in)",
        f"co_participants: besides the owner, only {bob[:4].hex()}… may take part",
        "output_recipients: besides the owner, only nobody else may receive the outputs",
        "expires_at: no task may use it after 1970-01-01 00:00:00 UTC, nor be valid longer",
        "max_uses: at most 2 task(s) in all",
    ]
    assert UsagePolicy(allowed_functions=[]).explain()[0] == "function: no function may read this dataset"


# --------------------------------------------------------------------------- usage rules, one by one


def test_rule_dataset_unknown_to_the_node(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    with pytest.raises(PolicyError) as exc:
        check_task(manifest, {D1: DatasetTerms(parties["alice"].party_id)}, {}, NOW)
    assert (exc.value.rule, exc.value.dataset_id) == ("dataset", D2)


def test_rule_owner_must_be_the_datasets(parties: dict[str, Party]) -> None:
    stolen = _manifest(parties, creator="carol", extra_inputs={"c": InputSlot(parties["carol"].party_id, D1)})
    with pytest.raises(PolicyError) as exc:
        check_task(stolen, _terms(parties), {}, NOW)
    assert (exc.value.rule, exc.value.dataset_id) == ("owner", D1)


def test_rule_function(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    for allowed in (
        ["ordered_set_intersect"],
        [FunctionRule("ordered_set_intersect", 1)],
        ["x", "ordered_set_intersect"],
    ):
        check_task(manifest, _terms(parties, UsagePolicy(allowed_functions=allowed)), {}, NOW)
    for refused in ([], ["psi"], [FunctionRule("ordered_set_intersect", 2)]):
        assert _broken(parties, manifest, UsagePolicy(allowed_functions=refused)) == "function"
    # a name allows the public built-in only, not another party's function of that name
    carol = parties["carol"]
    owned = _manifest(parties, function=FunctionRef("ordered_set_intersect", 1, carol.party_id))
    assert _broken(parties, owned, UsagePolicy(allowed_functions=["ordered_set_intersect"])) == "function"
    rule = FunctionRule("ordered_set_intersect", owner=carol.party_id)
    check_task(owned, _terms(parties, UsagePolicy(allowed_functions=[rule])), {}, NOW)


def test_rule_co_participants(parties: dict[str, Party]) -> None:
    bob, carol = parties["bob"].party_id, parties["carol"].party_id
    manifest = _manifest(parties)  # alice and bob
    check_task(manifest, _terms(parties, UsagePolicy(allowed_co_participants=[bob])), {}, NOW)
    assert _broken(parties, manifest, UsagePolicy(allowed_co_participants=[carol])) == "co_participants"
    assert _broken(parties, manifest, UsagePolicy(allowed_co_participants=[])) == "co_participants"
    with_carol = _manifest(parties, outputs={"out": ["alice", "carol"]})
    assert _broken(parties, with_carol, UsagePolicy(allowed_co_participants=[bob])) == "co_participants"
    by_carol = _manifest(parties, creator="carol")
    assert _broken(parties, by_carol, UsagePolicy(allowed_co_participants=[bob])) == "co_participants"


def test_rule_output_recipients(parties: dict[str, Party]) -> None:
    bob = parties["bob"].party_id
    only_alice = _manifest(parties, outputs={"out": ["alice"]})
    check_task(only_alice, _terms(parties, UsagePolicy(allowed_output_recipients=[])), {}, NOW)
    both = _manifest(parties)
    assert _broken(parties, both, UsagePolicy(allowed_output_recipients=[])) == "output_recipients"
    check_task(both, _terms(parties, UsagePolicy(allowed_output_recipients=[bob])), {}, NOW)
    shared = _manifest(parties, outputs={"out": ["alice", "bob", "dave"]})
    assert _broken(parties, shared, UsagePolicy(allowed_output_recipients=[bob])) == "output_recipients"


def test_rule_expires_at(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties, expires_at=NOW + 100)
    check_task(manifest, _terms(parties, UsagePolicy(expires_at=NOW + 100)), {}, NOW)
    assert _broken(parties, manifest, UsagePolicy(expires_at=NOW - 1)) == "expires_at"  # already expired
    assert _broken(parties, manifest, UsagePolicy(expires_at=NOW + 99)) == "expires_at"  # the task outlives it
    with pytest.raises(PolicyError, match="after the policy expires"):
        check_task(manifest, _terms(parties, UsagePolicy(expires_at=NOW + 99)), {}, NOW)


def test_rule_max_uses(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    check_task(manifest, _terms(parties, UsagePolicy(max_uses=3)), {D1: 2}, NOW)
    assert _broken(parties, manifest, UsagePolicy(max_uses=3), uses=3) == "max_uses"
    assert _broken(parties, manifest, UsagePolicy(max_uses=0)) == "max_uses"


def test_the_first_broken_rule_is_reported_in_order(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties, function=FunctionRef("psi", 1), expires_at=NOW + 10)
    everything = UsagePolicy(
        allowed_functions=[], allowed_co_participants=[], allowed_output_recipients=[], expires_at=0, max_uses=0
    )
    assert _broken(parties, manifest, everything) == "function"
    assert _broken(parties, manifest, UsagePolicy(allowed_co_participants=[], max_uses=0)) == "co_participants"
    assert _broken(parties, manifest, UsagePolicy(expires_at=0, max_uses=0)) == "expires_at"


def test_a_dataset_in_two_slots_counts_once(parties: dict[str, Party]) -> None:
    twice = _manifest(parties, extra_inputs={"a2": InputSlot(parties["alice"].party_id, D1)})
    check_task(twice, _terms(parties, UsagePolicy(max_uses=1)), {D1: 0}, NOW)


def test_check_task_wants_a_manifest(parties: dict[str, Party]) -> None:
    with pytest.raises(InvalidArgumentError):
        check_task(_manifest(parties).to_bytes(), {}, {}, NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- access rules, one by one


def _denied(action: str, party: Party, **kwargs: object) -> str:
    with pytest.raises(PermissionDeniedError) as exc:
        authorize(action, party.party_id, admitted=kwargs.pop("admitted", True), **kwargs)  # type: ignore[arg-type]
    assert exc.value.status == 94
    return exc.value.rule


def test_nobody_unadmitted_does_anything(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    for action in ACCESS_RULES:
        assert _denied(action, parties["alice"], admitted=False, manifest=manifest, slot="a") == "admitted"


def test_access_task_create(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties, creator="alice")
    authorize("task.create", parties["alice"].party_id, admitted=True, manifest=manifest)
    assert _denied("task.create", parties["bob"], manifest=manifest) == "task.create"  # not in someone else's name
    authorize("task.create", parties["carol"].party_id, admitted=True, manifest=_manifest(parties, creator="carol"))


@pytest.mark.parametrize("action", ["task.view", "task.approve"])
def test_access_participants_only(parties: dict[str, Party], action: str) -> None:
    manifest = _manifest(parties)
    for name in ("alice", "bob"):
        authorize(action, parties[name].party_id, admitted=True, manifest=manifest)
    assert _denied(action, parties["dave"], manifest=manifest) == action


@pytest.mark.parametrize("action", ["task.invoke", "task.cancel"])
def test_access_creator_only(parties: dict[str, Party], action: str) -> None:
    manifest = _manifest(parties)
    authorize(action, parties["alice"].party_id, admitted=True, manifest=manifest)
    assert _denied(action, parties["bob"], manifest=manifest) == action
    assert _denied(action, parties["dave"], manifest=manifest) == action


def test_access_input_assign(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    authorize("input.assign", parties["bob"].party_id, admitted=True, manifest=manifest, slot="b")
    assert _denied("input.assign", parties["alice"], manifest=manifest, slot="b") == "input.assign"
    with pytest.raises(NotFoundError):
        authorize("input.assign", parties["alice"].party_id, admitted=True, manifest=manifest, slot="zz")


@pytest.mark.parametrize("action", ["output.fetch", "result.delete"])
def test_access_output_owners_only(parties: dict[str, Party], action: str) -> None:
    manifest = _manifest(parties, outputs={"shared": ["alice", "bob"], "mine": ["alice"]})
    for name in ("alice", "bob"):
        authorize(action, parties[name].party_id, admitted=True, manifest=manifest, slot="shared")
    authorize(action, parties["alice"].party_id, admitted=True, manifest=manifest, slot="mine")
    assert _denied(action, parties["bob"], manifest=manifest, slot="mine") == action
    with pytest.raises(NotFoundError):
        authorize(action, parties["bob"].party_id, admitted=True, manifest=manifest, slot="zz")


def test_outsiders_learn_nothing_of_slots(parties: dict[str, Party]) -> None:
    manifest = _manifest(parties)
    for slot in ("a", "out_a", "does-not-exist"):
        for action in ("input.assign", "output.fetch"):
            assert _denied(action, parties["dave"], manifest=manifest, slot=slot) == action


@pytest.mark.parametrize("action", ["dataset.delete", "dataset.set_policy"])
def test_access_dataset_owner_only(parties: dict[str, Party], action: str) -> None:
    alice = parties["alice"].party_id
    authorize(action, alice, admitted=True, owner=alice)
    assert _denied(action, parties["bob"], owner=alice) == action
    authorize("dataset.upload", parties["bob"].party_id, admitted=True)


def test_access_arguments_are_checked(parties: dict[str, Party]) -> None:
    alice = parties["alice"].party_id
    manifest = _manifest(parties)
    with pytest.raises(InvalidArgumentError, match="unknown action"):
        authorize("task.destroy", alice, admitted=True, manifest=manifest)
    with pytest.raises(InvalidArgumentError, match="manifest"):
        authorize("task.view", alice, admitted=True)
    with pytest.raises(InvalidArgumentError, match="slot"):
        authorize("output.fetch", alice, admitted=True, manifest=manifest)
    with pytest.raises(InvalidArgumentError, match="owner"):
        authorize("dataset.delete", alice, admitted=True)
    assert _denied("task.view", parties["alice"], admitted=1, manifest=manifest) == "admitted"  # only True admits


def test_access_rules_are_explained() -> None:
    lines = explain_access()
    assert len(lines) == len(ACCESS_RULES)
    assert "output.fetch: only an output's owners fetch it" in lines
