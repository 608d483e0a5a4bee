"""Parties: keys at rest, datasets, approvals, grants, and opening results made by a (stand-in) enclave."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from mesatee.core import canonical, files, hpke
from mesatee.core.attestation import VerifiedClaims
from mesatee.core.manifest import (
    FunctionRef,
    InputSlot,
    Manifest,
    OutputFile,
    TaskResult,
    encode_invocation,
    verify_approval,
)
from mesatee.errors import AttestationError, CryptoError, FormatError, InvalidArgumentError, Status
from mesatee.parties import DatasetKey, Party, PartyIdentity
from protocol_enclave import FakeEnclave

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def alice() -> Party:
    return Party.generate()


@pytest.fixture(scope="module")
def bob() -> Party:
    return Party.generate()


@pytest.fixture(scope="module")
def carol() -> Party:
    return Party.generate()


@pytest.fixture(scope="module")
def enclave() -> FakeEnclave:
    return FakeEnclave()


def _manifest(creator: Party, owner: Party, dataset_id: bytes, enclave: FakeEnclave, **kw) -> Manifest:
    options = dict(
        creator=creator.identity,
        function=FunctionRef("echo", 1),
        enclaves=[enclave.requirement()],
        parties=[owner.identity],
        inputs={"data": InputSlot(owner.party_id, dataset_id)},
        outputs={"result": [creator.identity]},
    )
    options.update(kw)
    return Manifest.create(**options)


# --------------------------------------------------------------------------- identity and keys at rest


def test_generate_and_identity() -> None:
    party = Party.generate()
    identity = party.identity
    assert identity.party_id == hashlib.sha256(identity.signing_key).digest() == party.party_id
    assert len(identity.signing_key) == len(identity.hpke_key) == 32
    assert identity.hex == party.party_id.hex() and identity.hex in repr(party)
    assert PartyIdentity.from_bytes(identity.to_bytes()) == identity
    assert Party.generate().party_id != party.party_id
    with pytest.raises(InvalidArgumentError, match="SHA-256"):
        PartyIdentity(bytes(32), identity.signing_key, identity.hpke_key)
    with pytest.raises(FormatError):
        PartyIdentity.from_bytes(canonical.encode({"signing_key": bytes(32)}))


def test_save_and_load(tmp_path: Path) -> None:
    party = Party.generate()
    path = tmp_path / "alice.party"
    party.save(path, PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["alice.party"]  # no temporary left behind
    loaded = Party.load(path, PASSPHRASE)
    assert loaded.identity == party.identity
    # the file: a canonical map whose secrets are encrypted
    content = canonical.decode(path.read_bytes(), max_size=1 << 20)
    assert set(content) == {"version", "kdf", "salt", "nonce", "ciphertext"}
    assert content["kdf"] == {"name": "scrypt", "n": 2**15, "r": 8, "p": 1}
    secret_seed = party._signing_key.private_bytes_raw()
    assert secret_seed not in path.read_bytes()
    assert party._hpke_key.private_bytes_raw() not in path.read_bytes()
    # a second save uses a fresh salt and nonce
    party.save(path, PASSPHRASE)
    again = canonical.decode(path.read_bytes(), max_size=1 << 20)
    assert again["salt"] != content["salt"] and again["nonce"] != content["nonce"]


def test_wrong_passphrase_and_damaged_files(tmp_path: Path) -> None:
    party = Party.generate()
    path = tmp_path / "p"
    party.save(path, PASSPHRASE)
    with pytest.raises(CryptoError, match="wrong passphrase or damaged party file"):
        Party.load(path, PASSPHRASE + "!")
    content = canonical.decode(path.read_bytes(), max_size=1 << 20)
    for field in ("ciphertext", "salt", "nonce"):
        changed = dict(content)
        changed[field] = bytes([content[field][0] ^ 1]) + content[field][1:]
        path.write_bytes(canonical.encode(changed))
        with pytest.raises(CryptoError, match="wrong passphrase or damaged party file"):
            Party.load(path, PASSPHRASE)
    # the kdf parameters are authenticated too (AAD), so a cheaper kdf cannot be swapped in unnoticed
    changed = dict(content, kdf={"name": "scrypt", "n": 2**14, "r": 8, "p": 1})
    path.write_bytes(canonical.encode(changed))
    with pytest.raises(CryptoError):
        Party.load(path, PASSPHRASE)
    for bad in (
        b"not msgpack",
        canonical.encode([1]),
        canonical.encode(dict(content, version=2)),
        canonical.encode({k: v for k, v in content.items() if k != "salt"}),
        canonical.encode(dict(content, kdf={"name": "scrypt", "n": 2**30, "r": 8, "p": 1})),
        canonical.encode(dict(content, kdf={"name": "pbkdf2", "n": 2**15, "r": 8, "p": 1})),
        canonical.encode(dict(content, nonce=bytes(11))),
    ):
        path.write_bytes(bad)
        with pytest.raises(FormatError, match="party file"):
            Party.load(path, PASSPHRASE)


def test_passphrase_rules(tmp_path: Path) -> None:
    party = Party.generate()
    with pytest.raises(InvalidArgumentError, match="empty"):
        party.save(tmp_path / "p", "")
    with pytest.raises(InvalidArgumentError, match="str"):
        party.save(tmp_path / "p", b"bytes")  # type: ignore[arg-type]
    party.save(tmp_path / "p", "caf\u00e9")  # composed é
    assert Party.load(tmp_path / "p", "cafe\u0301").party_id == party.party_id  # decomposed: same after NFC


def test_keyring_persists(tmp_path: Path) -> None:
    party = Party.generate()
    src = tmp_path / "data.csv"
    src.write_bytes(b"id,amount\n1,100\n")
    encrypted = party.encrypt_dataset(src, tmp_path / "data.mtef", chunk_size=4096)
    assert encrypted.dataset_id == hashlib.sha256((tmp_path / "data.mtef").read_bytes()).digest()
    assert party.dataset_key(encrypted.dataset_id) == encrypted.key
    teaclave_id = hashlib.sha256(b"teaclave file").digest()
    party.add_dataset_key(teaclave_id, bytes(16), iv=bytes(12), format="teaclave-aes-gcm-128")
    party.save(tmp_path / "party", PASSPHRASE)
    loaded = Party.load(tmp_path / "party", PASSPHRASE)
    assert loaded.dataset_key(encrypted.dataset_id) == encrypted.key
    assert loaded.dataset_entry(teaclave_id) == DatasetKey(bytes(16), "teaclave-aes-gcm-128", bytes(12))
    assert set(loaded.datasets) == {encrypted.dataset_id, teaclave_id}
    assert files.decrypt_bytes((tmp_path / "data.mtef").read_bytes(), loaded.dataset_key(encrypted.dataset_id)) == (
        b"id,amount\n1,100\n"
    )
    with pytest.raises(InvalidArgumentError, match="no key for dataset"):
        loaded.dataset_key(bytes(32))


def test_dataset_key_rules() -> None:
    party = Party.generate()
    d = bytes(32)
    with pytest.raises(InvalidArgumentError, match="iv"):
        party.add_dataset_key(d, bytes(32), format="teaclave-aes-gcm-256")
    with pytest.raises(InvalidArgumentError, match="iv is only for Teaclave"):
        party.add_dataset_key(d, bytes(32), iv=bytes(12))
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        party.add_dataset_key(d, bytes(32), iv=bytes(12), format="teaclave-aes-gcm-128")
    with pytest.raises(InvalidArgumentError, match="not one of"):
        party.add_dataset_key(d, bytes(32), format="zip")
    assert bytes(32).hex() not in repr(DatasetKey(bytes(32)))


# --------------------------------------------------------------------------- approvals and grants


def test_approve_verifies(alice: Party, bob: Party, enclave: FakeEnclave) -> None:
    manifest = _manifest(alice, bob, bytes(32), enclave)
    signature = alice.approve(manifest)
    Ed25519PublicKey.from_public_bytes(alice.identity.signing_key).verify(
        signature, b"mesatee/approval/v1" + manifest.hash
    )
    verify_approval(manifest, alice.party_id, signature)
    verify_approval(manifest, bob.party_id, bob.approve(manifest))


def test_approve_refuses_a_manifest_not_naming_this_party_faithfully(
    alice: Party, bob: Party, carol: Party, enclave: FakeEnclave
) -> None:
    manifest = _manifest(alice, bob, bytes(32), enclave)
    with pytest.raises(InvalidArgumentError, match="not a participant"):
        carol.approve(manifest)
    impostor = PartyIdentity.from_keys(
        bob.identity.signing_key, X25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    forged = _manifest(alice, bob, bytes(32), enclave, parties=[impostor])
    with pytest.raises(InvalidArgumentError, match="another HPKE key"):
        bob.approve(forged)
    expired = _manifest(alice, bob, bytes(32), enclave, expires_at=int(time.time()) - 1)
    with pytest.raises(InvalidArgumentError, match="expired"):
        bob.approve(expired)


def _owned_dataset(owner: Party, tmp_path: Path) -> files.EncryptedFile:
    src = tmp_path / f"{owner.party_id.hex()[:8]}.txt"
    src.write_bytes(b"the owner's rows")
    return owner.encrypt_dataset(src, src.with_suffix(".mtef"), chunk_size=4096)


def test_grant_opens_only_in_the_enclave_for_that_task_and_slot(
    alice: Party, bob: Party, enclave: FakeEnclave, tmp_path: Path
) -> None:
    dataset = _owned_dataset(bob, tmp_path)
    manifest = _manifest(alice, bob, dataset.dataset_id, enclave)
    grant = bob.grant(manifest, "data", enclave.claims)
    payload = hpke.open(enclave.hpke_key, grant, hpke.grant_info(manifest.hash, "data"))
    assert canonical.decode(payload, max_size=100) == {"key": dataset.key}
    other = _manifest(alice, bob, dataset.dataset_id, enclave)  # same content, another task id
    for info in (
        hpke.grant_info(other.hash, "data"),
        hpke.grant_info(manifest.hash, "data2"),
        hpke.output_key_info(manifest.hash, "data"),
        hpke.return_value_info(manifest.hash),
    ):
        with pytest.raises(CryptoError):
            hpke.open(enclave.hpke_key, grant, info)
    with pytest.raises(CryptoError):
        hpke.open(X25519PrivateKey.generate(), grant, hpke.grant_info(manifest.hash, "data"))


def test_grant_of_a_teaclave_dataset_carries_its_iv(alice: Party, bob: Party, enclave: FakeEnclave) -> None:
    key, iv = os.urandom(32), os.urandom(12)
    file = files.teaclave_encrypt(b"rows", key, iv)
    dataset_id = hashlib.sha256(file).digest()
    bob.add_dataset_key(dataset_id, key, iv=iv, format="teaclave-aes-gcm-256")
    manifest = _manifest(
        alice, bob, dataset_id, enclave, inputs={"data": InputSlot(bob.party_id, dataset_id, "teaclave-aes-gcm-256")}
    )
    grant = bob.grant(manifest, "data", enclave.claims)
    assert enclave.open_grant(manifest, "data", grant) == {"key": key, "iv": iv}
    wrong_format = _manifest(alice, bob, dataset_id, enclave)  # names it mesatee-v1
    with pytest.raises(InvalidArgumentError, match="keyring holds a teaclave-aes-gcm-256 key"):
        bob.grant(wrong_format, "data", enclave.claims)


def test_a_party_cannot_grant_a_slot_it_does_not_own(
    alice: Party, bob: Party, enclave: FakeEnclave, tmp_path: Path
) -> None:
    dataset = _owned_dataset(bob, tmp_path)
    alice.add_dataset_key(dataset.dataset_id, dataset.key)  # even holding the key
    manifest = _manifest(alice, bob, dataset.dataset_id, enclave)
    with pytest.raises(InvalidArgumentError, match=r"belongs to party .*, not to this party"):
        alice.grant(manifest, "data", enclave.claims)
    with pytest.raises(InvalidArgumentError, match="no input slot 'other'"):
        bob.grant(manifest, "other", enclave.claims)
    with pytest.raises(InvalidArgumentError, match="not a participant"):
        Party.generate().grant(manifest, "data", enclave.claims)


def test_grant_refuses_an_enclave_the_manifest_does_not_accept(
    alice: Party, bob: Party, enclave: FakeEnclave, tmp_path: Path
) -> None:
    dataset = _owned_dataset(bob, tmp_path)
    manifest = _manifest(alice, bob, dataset.dataset_id, enclave)
    impostor = FakeEnclave(mrenclave=bytes(32))
    with pytest.raises(AttestationError, match="meets none") as caught:
        bob.grant(manifest, "data", impostor.claims)
    assert caught.value.status == Status.MRENCLAVE_MISMATCH
    unknown = _manifest(alice, bob, os.urandom(32), enclave)
    with pytest.raises(InvalidArgumentError, match="no key for dataset"):
        bob.grant(unknown, "data", enclave.claims)


# --------------------------------------------------------------------------- verify_enclave and results


def test_verify_enclave(alice: Party, enclave: FakeEnclave) -> None:
    evidence, policy = enclave.evidence(nonce=b"fresh")
    claims = alice.verify_enclave(evidence, policy, nonce=b"fresh")
    assert claims.hpke_public_key == enclave.hpke_public_key
    assert claims.signing_public_key == enclave.signing_public_key
    with pytest.raises(AttestationError) as caught:
        alice.verify_enclave(evidence, policy, nonce=b"stale")
    assert caught.value.status == Status.NONCE_MISMATCH


def _run_task(
    tmp_path: Path, enclave: FakeEnclave
) -> tuple[dict[str, Party], Manifest, TaskResult, dict[bytes, VerifiedClaims]]:
    """Alice and Bob own inputs (an MTEF file, a Teaclave file); Carol creates; outputs go to some of them."""
    alice, bob, carol = Party.generate(), Party.generate(), Party.generate()
    a_src = tmp_path / "a.txt"
    a_src.write_bytes(b"apple\nbanana\n")
    a_file = alice.encrypt_dataset(a_src, tmp_path / "a.mtef", chunk_size=4096)
    b_key, b_iv = os.urandom(16), os.urandom(12)
    b_bytes = files.teaclave_encrypt(b"banana\ncherry\n", b_key, b_iv)
    b_id = hashlib.sha256(b_bytes).digest()
    bob.add_dataset_key(b_id, b_key, iv=b_iv, format="teaclave-aes-gcm-128")

    evidence, policy = enclave.evidence(nonce=b"n")
    claims = {p.party_id: p.verify_enclave(evidence, policy, nonce=b"n") for p in (alice, bob, carol)}
    manifest = Manifest.create(
        creator=carol.identity,
        function=FunctionRef("intersect", 1),
        enclaves=[enclave.requirement()],
        parties=[alice.identity, bob.identity],
        inputs={
            "left": InputSlot(alice.party_id, a_file.dataset_id),
            "right": InputSlot(bob.party_id, b_id, "teaclave-aes-gcm-128"),
        },
        outputs={"common": [alice.identity, carol.identity], "report": [bob.identity]},
        arguments={"separator": "\n"},
    )
    approvals = {p.party_id: p.approve(manifest) for p in (alice, bob, carol)}
    grants = {
        "left": alice.grant(manifest, "left", claims[alice.party_id]),
        "right": bob.grant(manifest, "right", claims[bob.party_id]),
    }
    inputs = {"left": (tmp_path / "a.mtef").read_bytes(), "right": b_bytes}
    invocation = encode_invocation(manifest.to_bytes(), approvals, grants, inputs, int(time.time()))

    def intersect(arguments, plaintexts):
        sep = arguments["separator"].encode()
        left, right = (set(plaintexts[s].split(sep)) - {b""} for s in ("left", "right"))
        common = sorted(left & right)
        return f"{len(common)} common".encode(), {"common": sep.join(common), "report": b"compared 2 inputs"}

    result = TaskResult.from_bytes(enclave.invoke(invocation, intersect))
    return {"alice": alice, "bob": bob, "carol": carol}, manifest, result, claims


def test_open_result_decrypts_what_each_party_is_owed(tmp_path: Path, enclave: FakeEnclave) -> None:
    parties, manifest, result, claims = _run_task(tmp_path, enclave)
    opened = {name: p.open_result(result, manifest, claims[p.party_id]) for name, p in parties.items()}
    for o in opened.values():
        assert o.return_value == b"1 common"
        assert o.receipt.manifest_hash == manifest.hash
    assert dict(opened["alice"].outputs) == {"common": b"banana"}
    assert dict(opened["carol"].outputs) == {"common": b"banana"}
    assert dict(opened["bob"].outputs) == {"report": b"compared 2 inputs"}


def test_open_result_refuses_tampered_or_misdirected_results(tmp_path: Path, enclave: FakeEnclave) -> None:
    parties, manifest, result, claims = _run_task(tmp_path, enclave)
    alice, bob = parties["alice"], parties["bob"]
    c = claims[alice.party_id]
    # a result for another manifest
    other_task = Manifest.create(
        creator=parties["carol"].identity,
        function=manifest.function,
        enclaves=manifest.enclaves,
        parties=[alice.identity, bob.identity],
        inputs=manifest.inputs,
        outputs={slot: spec.owners for slot, spec in manifest.outputs.items()},
        arguments=manifest.arguments,
    )
    with pytest.raises(FormatError, match="receipt is for another task"):
        alice.open_result(result, other_task, c)
    # a result signed by another enclave
    with pytest.raises(CryptoError, match="signature"):
        alice.open_result(result, manifest, FakeEnclave().claims)
    # an attested enclave whose receipt names another identity
    changed_claims = dataclasses.replace(c, security_version=c.security_version + 1)
    with pytest.raises(AttestationError, match="receipt names enclave") as caught:
        alice.open_result(result, manifest, changed_claims)
    assert caught.value.status == Status.CLAIMS_MISMATCH
    # a swapped output file
    outputs = dict(result.outputs)
    outputs["common"] = OutputFile(result.outputs["report"].file, result.outputs["common"].keys)
    with pytest.raises(CryptoError, match="output 'common' does not hash"):
        alice.open_result(TaskResult(result.receipt_bytes, result.signature, outputs, result.return_value), manifest, c)
    # an output key sealed to someone else: it does not open for Alice
    outputs = dict(result.outputs)
    keys = dict(result.outputs["common"].keys)
    keys[alice.party_id] = keys[parties["carol"].party_id]
    outputs["common"] = OutputFile(result.outputs["common"].file, keys)
    with pytest.raises(CryptoError, match="did not open"):
        alice.open_result(TaskResult(result.receipt_bytes, result.signature, outputs, result.return_value), manifest, c)
    # an output key withheld
    del keys[alice.party_id]
    outputs["common"] = OutputFile(result.outputs["common"].file, keys)
    with pytest.raises(FormatError, match="no key of output 'common' for this party"):
        alice.open_result(TaskResult(result.receipt_bytes, result.signature, outputs, result.return_value), manifest, c)
    # someone else's return value
    values = dict(result.return_value)
    values[alice.party_id] = values[bob.party_id]
    with pytest.raises(CryptoError, match="does not hash"):
        alice.open_result(TaskResult(result.receipt_bytes, result.signature, result.outputs, values), manifest, c)
    # a party not in the task
    with pytest.raises(InvalidArgumentError, match="not a participant"):
        Party.generate().open_result(result, manifest, c)


def test_a_party_without_a_return_value_gets_none(tmp_path: Path, enclave: FakeEnclave) -> None:
    parties, manifest, result, claims = _run_task(tmp_path, enclave)
    bob = parties["bob"]
    receipt = canonical.decode(result.receipt_bytes, max_size=1 << 20)
    del receipt["return_value"][bob.party_id.hex()]
    receipt_bytes = canonical.encode(receipt)
    values = {k: v for k, v in result.return_value.items() if k != bob.party_id}
    signature = enclave.signing_key.sign(hpke.receipt_message(receipt_bytes))
    opened = bob.open_result(
        TaskResult(receipt_bytes, signature, result.outputs, values), manifest, claims[bob.party_id]
    )
    assert opened.return_value is None and dict(opened.outputs) == {"report": b"compared 2 inputs"}


# --------------------------------------------------------------------------- layering


def test_importing_parties_loads_no_native_code() -> None:
    code = (
        "import sys, mesatee.parties\n"
        "p = mesatee.parties.Party.generate()\n"
        "bad = [m for m in sys.modules if m.startswith('mesatee._native') or m == 'mesatee._bindings']\n"
        "assert not bad, bad\n"
        "assert 'mesatee.core.enclave' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
