"""The set and join functions, rsa_sign: Teaclave's cases, cross-checks against Python, and bad input.

Every case runs as a whole task through the real enclave (tests/task_host.py).
ordered_set_intersect's and password_check's Teaclave cases are in test_task.py.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import REPO
from mesatee import Status, TaskRefusedError
from mesatee.parties import Party
from task_host import run_function

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave"


@pytest.fixture(scope="module")
def world(task_world):
    """The enclave, its claims, and 16 parties (the first four are task_world's)."""
    enclave, claims, parties = task_world
    return enclave, claims, (*parties, *(Party.generate() for _ in range(16 - len(parties))))


def call(world, tmp_path: Path, function: str, arguments: dict, inputs: dict[str, bytes], outputs: list[str]):
    """Input i belongs to party i (in slot order), output j to party j; the creator is party 0."""
    enclave, claims, parties = world
    return run_function(
        enclave, claims, tmp_path, function, parties[0], arguments=arguments,
        inputs={slot: (parties[i], data) for i, (slot, data) in enumerate(inputs.items())},
        outputs={slot: [parties[j]] for j, slot in enumerate(outputs)},
    )  # fmt: skip


def refused(world, tmp_path, status: Status, match: str, *args) -> None:
    with pytest.raises(TaskRefusedError, match=match) as info:
        call(world, tmp_path, *args)
    assert info.value.status == status, str(info.value)


def lines(text: bytes) -> list[str]:
    return text.decode().splitlines()


# --------------------------------------------------------------------------- declarations


def test_declarations(world) -> None:
    declared = world[0].functions()
    assert {"ordered_set_join", "private_join_and_compute", "private_set_intersection", "rsa_sign"} <= set(declared)
    for name in ("private_join_and_compute", "private_set_intersection"):
        fn = declared[name]
        assert [s.name for s in fn.inputs] == [f"input_data{i}" for i in range(16)]
        assert [s.name for s in fn.outputs] == [f"output_data{i}" for i in range(16)]
        assert all(s.optional for s in (*fn.inputs, *fn.outputs))
    num_user = declared["private_join_and_compute"].arguments[0]
    assert (num_user.name, num_user.required, num_user.min, num_user.max) == ("num_user", True, 2, 16)
    join = {a.name: a for a in declared["ordered_set_join"].arguments}
    assert (join["left_column"].min, join["left_column"].max, join["drop"].default) == (0, 1023, True)
    assert [s.name for s in declared["rsa_sign"].inputs] == ["rsa_key"] and declared["rsa_sign"].outputs == ()


# --------------------------------------------------------------------------- ordered_set_join


def python_join(a: list[str], b: list[str], left: int, right: int, drop: bool) -> list[str]:
    """The reference: a dict over the second file's keys, rows in the first file's order."""
    by_key = {row.split(",")[right]: row.split(",") for row in b}
    out = []
    for row in a:
        fields = row.split(",")
        other = by_key.get(fields[left])
        if other is not None:
            out.append(",".join(fields + [f for c, f in enumerate(other) if not (drop and c == right)]))
    return out


def join(world, tmp_path, a: bytes, b: bytes, **arguments) -> tuple[bytes, bytes]:
    value, outputs = call(
        world, tmp_path, "ordered_set_join", arguments, {"input_data1": a, "input_data2": b}, ["output_result"]
    )
    return value, outputs["output_result"]


def test_ordered_set_join_teaclave(world, tmp_path: Path) -> None:
    a = (TEACLAVE / "ordered_set_join" / "join0.csv").read_bytes()
    b = (TEACLAVE / "ordered_set_join" / "join1.csv").read_bytes()
    value, out = join(world, tmp_path, a, b, left_column=0, right_column=0, ascending=True, drop=True)
    assert value == b"120 records"
    assert lines(out) == python_join(lines(a), lines(b), 0, 0, True)
    assert lines(out)[0] == "100000,4.8,3.0,1.4,0.3,3.0"


@pytest.mark.parametrize(("ascending", "drop"), [(True, False), (False, True)])
def test_ordered_set_join_against_a_dict(world, tmp_path: Path, ascending: bool, drop: bool) -> None:
    rng = random.Random(7)
    keys = rng.sample(range(10_000, 99_999), 600)
    ka, kb = sorted(rng.sample(keys, 400), reverse=not ascending), sorted(rng.sample(keys, 300), reverse=not ascending)
    a = [f"{rng.random():.3f},{k},x{rng.randrange(9)}" for k in ka]  # key in column 1
    b = [f"{k},{rng.randrange(100)}" for k in kb]  # key in column 0
    value, out = join(world, tmp_path, "\n".join(a).encode(), ("\r\n".join(b) + "\r\n").encode(),
                      left_column=1, right_column=0, ascending=ascending, drop=drop)  # fmt: skip
    expected = python_join(a, b, 1, 0, drop)
    assert value == f"{len(expected)} records".encode() and len(expected) > 100
    assert lines(out) == expected


def test_ordered_set_join_empty_result(world, tmp_path: Path) -> None:
    value, out = join(world, tmp_path, b"1,a\n2,b\n", b"3,c\n", left_column=0, right_column=0)
    assert (value, out) == (b"0 records", b"")


@pytest.mark.parametrize(
    ("a", "b", "arguments", "status", "match"),
    [
        (b"1,a\n3,b\n2,c\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 3: key not in strictly ascending"),
        (b"1,a\n1,b\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 2: key not in strictly ascending"),
        # keys compare as byte strings: "10" sorts before "9"
        (b"9,a\n10,b\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 2: key not in strictly ascending"),
        (b"1,a\n", b"2,x\n1,y\n", {}, Status.INPUT_INVALID, r"input_data2, line 2: key not in strictly ascending"),
        (
            b"2,a\n1,b\n",
            b"1,x\n2,y\n",
            {"ascending": False},
            Status.INPUT_INVALID,
            r"input_data2, line 2: key not in strictly descending order",
        ),
        (b"1,a\n2,b,c\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 2: has 3 columns, expected 2"),
        (
            b"1,a\n",
            b"1,x\n",
            {"left_column": 2},
            Status.INPUT_INVALID,
            r"input_data1, line 1: has 2 columns, too few for left_column 2",
        ),
        (b"1,a\n,b\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 2: the key column is empty"),
        (b"1,a\n\n2,b\n", b"1,x\n", {}, Status.INPUT_INVALID, r"input_data1, line 2: empty line"),
        (b"1,a\n", b"", {}, Status.INPUT_INVALID, r"input input_data2 is empty"),
        (b"1,a\n", b"1,x\n", {"left_column": 1024}, Status.ARGUMENT_INVALID, r"left_column must be at most 1023"),
        (b"1,a\n", b"1,x\n", {"right_column": -1}, Status.ARGUMENT_INVALID, r"right_column must be at least 0"),
        (b"1,a\n", b"1,x\n", {"drop": 1}, Status.ARGUMENT_INVALID, r"drop must be true or false"),
        (
            b"1,a\n",
            b"1,x\n",
            {"right_column": None},
            Status.ARGUMENT_INVALID,
            r"missing required argument right_column",
        ),
    ],
)
def test_ordered_set_join_refuses(world, tmp_path: Path, a, b, arguments, status, match) -> None:
    args = {k: v for k, v in {"left_column": 0, "right_column": 0, **arguments}.items() if v is not None}
    refused(world, tmp_path, status, match, "ordered_set_join", args, {"input_data1": a, "input_data2": b},
            ["output_result"])  # fmt: skip


# --------------------------------------------------------------------------- private_join_and_compute


def python_join_and_compute(texts: list[bytes]) -> bytes:
    """The reference: parse `id : amount` lines, sum per id, keep the ids every party holds."""
    sums: dict[str, int] = {}
    held: list[set[str]] = []
    for text in texts:
        ids = set()
        for line in text.decode().splitlines():
            ident, amount = (f.strip() for f in line.split(":"))
            sums[ident] = sums.get(ident, 0) + int(amount)
            ids.add(ident)
        held.append(ids)
    common = sorted(set.intersection(*held), key=str.encode)
    return "".join(f"{i} : {sums[i]}\n" for i in common).encode()


def pjc(world, tmp_path, texts: list[bytes], num_user: int | None = None, outputs: int | None = None):
    n = len(texts)
    return call(
        world, tmp_path, "private_join_and_compute", {"num_user": n if num_user is None else num_user},
        {f"input_data{i}": t for i, t in enumerate(texts)},
        [f"output_data{i}" for i in range(n if outputs is None else outputs)],
    )  # fmt: skip


def test_private_join_and_compute_teaclave(world, tmp_path: Path) -> None:
    folder = TEACLAVE / "private_join_and_compute" / "three_party_data"
    texts = [(folder / f"bank_{x}.txt").read_bytes() for x in "abc"]
    value, outputs = pjc(world, tmp_path, texts)
    assert value == b"3 users join the task in total."
    assert outputs == {f"output_data{i}": b"c : 470000\ne : 5033000\n" for i in range(3)}


def test_private_join_and_compute_against_a_dict(world, tmp_path: Path) -> None:
    rng = random.Random(3)
    universe = [f"user{k:05d}" for k in range(3000)]
    texts = []
    for _ in range(4):
        ids = rng.sample(universe, 2000)
        ids += rng.sample(ids, 50)  # an id on several lines of one input: its amounts add up
        rng.shuffle(ids)
        texts.append("".join(f"{i} : {rng.randrange(-(10**12), 10**12)}\n" for i in ids).encode())
    value, outputs = pjc(world, tmp_path, texts)
    expected = python_join_and_compute(texts)
    assert value == b"4 users join the task in total." and expected.count(b"\n") > 100
    assert outputs == {f"output_data{i}": expected for i in range(4)}


def test_private_join_and_compute_sixteen_parties(world, tmp_path: Path) -> None:
    texts = [f"a : {i}\nb{i} : 1\nz : -{i}\n".encode() for i in range(16)]
    value, outputs = pjc(world, tmp_path, texts)
    assert value == b"16 users join the task in total."
    assert set(outputs.values()) == {b"a : 120\nz : -120\n"}


@pytest.mark.parametrize(
    ("texts", "status", "match"),
    [
        (
            [b"a : 1\n", b"a : 1\nb 2\n"],
            Status.INPUT_INVALID,
            r"input_data1, line 2: expected `id : amount`, one colon",
        ),
        ([b"a : 1\n", b"a : 1 : 2\n"], Status.INPUT_INVALID, r"input_data1, line 1: expected `id : amount`, one colon"),
        ([b"a : 1.5\n", b"a : 1\n"], Status.INPUT_INVALID, r"input_data0, line 1: the amount is not an integer"),
        ([b"a : x\n", b"a : 1\n"], Status.INPUT_INVALID, r"input_data0, line 1: the amount is not an integer"),
        ([b"a : 1\n : 3\n", b"a : 1\n"], Status.INPUT_INVALID, r"input_data0, line 2: the id is empty"),
        ([b"a : 1\n", b"a : 99999999999999999999\n"], Status.INPUT_INVALID, r"input_data1, line 1: .*64-bit range"),
        ([b"a : 1\n", b""], Status.INPUT_INVALID, r"input input_data1 is empty"),
        ([b"a : 9223372036854775807\n", b"a : 1\n"], Status.FUNCTION_FAILED, r"a sum overflows the 64-bit range"),
        ([b"a : -9223372036854775808\n", b"a : -1\n"], Status.FUNCTION_FAILED, r"a sum overflows"),
    ],
)
def test_private_join_and_compute_refuses_bad_input(world, tmp_path: Path, texts, status, match) -> None:
    with pytest.raises(TaskRefusedError, match=match) as info:
        pjc(world, tmp_path, texts)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("inputs", "num_user", "outputs", "match"),
    [
        (2, 3, 3, r"num_user is 3 but input_data2 is missing"),
        (3, 2, 2, r"num_user is 2 but input_data2 is given"),
        (3, 3, 2, r"num_user is 3 but output_data2 is missing"),
        (2, 2, 3, r"num_user is 2 but output_data2 is given"),
        (2, 1, 2, r"num_user must be at least 2"),
        (2, 17, 2, r"num_user must be at most 16"),
    ],
)
def test_private_join_and_compute_slots_follow_num_user(world, tmp_path: Path, inputs, num_user, outputs, match):
    with pytest.raises(TaskRefusedError, match=match) as info:
        pjc(world, tmp_path, [b"a : 1\n"] * inputs, num_user=num_user, outputs=outputs)
    assert info.value.status == Status.ARGUMENT_INVALID


# --------------------------------------------------------------------------- private_set_intersection


def psi(world, tmp_path, texts: list[bytes], mode: str | None = None, outputs: int | None = None):
    return call(
        world, tmp_path, "private_set_intersection", {} if mode is None else {"mode": mode},
        {f"input_data{i}": t for i, t in enumerate(texts)},
        [f"output_data{i}" for i in range(len(texts) if outputs is None else outputs)],
    )  # fmt: skip


@pytest.mark.parametrize("parties", [2, 3, 5])
def test_private_set_intersection_against_python_sets(world, tmp_path: Path, parties: int) -> None:
    rng = random.Random(parties)
    universe = [f"{rng.getrandbits(128):032x}" for _ in range(1500)]
    shared = universe[:300]
    items = [shared + rng.sample(universe[300:], 600) + rng.sample(shared, 40) for _ in range(parties)]  # duplicates
    for each in items:
        rng.shuffle(each)
    texts = ["\n".join(each).encode() for each in items]
    common = set.intersection(*(set(each) for each in items))

    value, outputs = psi(world, tmp_path, texts)
    assert value == f"{len(common)} common items".encode() and len(common) >= 300
    expected = "".join(f"{x}\n" for x in sorted(common)).encode()
    assert outputs == {f"output_data{i}": expected for i in range(parties)}

    value, outputs = psi(world, tmp_path, texts, "membership")
    assert value == f"{len(common)} common items".encode()
    for i, each in enumerate(items):
        assert outputs[f"output_data{i}"] == "".join("1" if x in common else "0" for x in each).encode()


def test_private_set_intersection_many_lines_duplicates_and_crlf(world, tmp_path: Path) -> None:
    """Inputs of many candidate batches (1,024 lines each), duplicates straddling them, a CRLF input, 4 rounds."""
    rng = random.Random(7)
    universe = [f"{rng.getrandbits(64):x}" for _ in range(12_000)]
    shared = universe[:3000]
    items = [shared + rng.sample(universe[3000:], 5000) + rng.choices(universe, k=2000) for _ in range(4)]
    for each in items:
        rng.shuffle(each)
    texts = ["\n".join(each).encode() for each in items[:3]] + ["\r\n".join(items[3]).encode() + b"\r\n"]
    common = set.intersection(*(set(each) for each in items))

    value, outputs = psi(world, tmp_path, texts)
    assert value == f"{len(common)} common items".encode() and len(common) >= 3000
    expected = "".join(f"{x}\n" for x in sorted(common)).encode()
    assert outputs == {f"output_data{i}": expected for i in range(4)}

    value, outputs = psi(world, tmp_path, texts, "membership")
    for i, each in enumerate(items):
        assert outputs[f"output_data{i}"] == "".join("1" if x in common else "0" for x in each).encode()


def test_private_set_intersection_sorts_many_items_as_bytes(world, tmp_path: Path) -> None:
    """Beyond 65,536 common items the sort is a radix sort on 8-byte prefixes, then by comparison within a prefix."""
    rng = random.Random(11)
    items = {f"{rng.getrandbits(40):010x}" for _ in range(60_000)}
    items |= {f"samepref{rng.getrandbits(20)}" for _ in range(8000)}  # runs sharing their first 8 bytes
    items |= {"é", "z", "a", "ab", "abcdefgh", "abcdefg", "abcdefgh\t", "~", "\t"}  # short, tab, non-ASCII
    items = sorted(items)
    a, b = [*items, "only-a"], [*items, "only-b"]
    rng.shuffle(a)
    rng.shuffle(b)
    value, outputs = psi(world, tmp_path, ["\n".join(a).encode(), "\n".join(b).encode()])
    assert value == f"{len(items)} common items".encode() and len(items) > 65_536
    expected = b"".join(x + b"\n" for x in sorted(x.encode() for x in items))
    assert outputs == {"output_data0": expected, "output_data1": expected}


def test_private_set_intersection_sixteen_parties_and_empty_result(world, tmp_path: Path) -> None:
    texts = [f"common\nmine{i}\ncommon\n".encode() for i in range(16)]
    value, outputs = psi(world, tmp_path, texts)
    assert value == b"1 common items" and set(outputs.values()) == {b"common\n"}
    value, outputs = psi(world, tmp_path, [b"a\nb\n", b"c\n"])
    assert value == b"0 common items" and set(outputs.values()) == {b""}
    value, outputs = psi(world, tmp_path, [b"a\nb\n", b"c\n"], "membership")
    assert outputs == {"output_data0": b"00", "output_data1": b"0"}


@pytest.mark.parametrize(
    ("texts", "arguments", "outputs", "status", "match"),
    [
        ([b"a\n"], {}, 1, Status.ARGUMENT_INVALID, r"needs at least 2 inputs"),
        ([b"a\n", b"a\n"], {}, 1, Status.ARGUMENT_INVALID, r"2 inputs are given but output_data1 is missing"),
        ([b"a\n", b"a\n"], {}, 3, Status.ARGUMENT_INVALID, r"2 inputs are given but output_data2 is given"),
        ([b"a\n", b"a\n"], {"mode": "union"}, 2, Status.ARGUMENT_INVALID, r"mode must be one of: intersection, "),
        ([b"a\n", b"a\n\nb\n"], {}, 2, Status.INPUT_INVALID, r"input input_data1, line 2: empty line"),
        ([b"a\n", b"a\x00\n"], {}, 2, Status.INPUT_INVALID, r"input input_data1, line 1: control character"),
        ([b"", b"a\n"], {}, 2, Status.INPUT_INVALID, r"input input_data0 is empty"),
    ],
)
def test_private_set_intersection_refuses(world, tmp_path: Path, texts, arguments, outputs, status, match) -> None:
    with pytest.raises(TaskRefusedError, match=match) as info:
        psi(world, tmp_path, texts, arguments.get("mode"), outputs)
    assert info.value.status == status


def test_private_set_intersection_inputs_must_be_numbered_from_zero(world, tmp_path: Path) -> None:
    refused(world, tmp_path, Status.ARGUMENT_INVALID, r"2 inputs are given but input_data1 is missing",
            "private_set_intersection", {}, {"input_data0": b"a\n", "input_data2": b"a\n"},
            ["output_data0", "output_data1"])  # fmt: skip


# --------------------------------------------------------------------------- rsa_sign


def sign(world, tmp_path, key: bytes, data: str = "test data") -> bytes:
    value, outputs = call(world, tmp_path, "rsa_sign", {"data": data}, {"rsa_key": key}, [])
    assert outputs == {}
    return value


def test_rsa_sign_teaclave(world, tmp_path: Path) -> None:
    key = (TEACLAVE / "rsa_sign" / "key.der").read_bytes()
    assert sign(world, tmp_path, key) == (TEACLAVE / "rsa_sign" / "expected_rsasign.txt").read_bytes().strip()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())  # fmt: skip


def test_rsa_sign_verifies_with_cryptography(world, tmp_path: Path, rsa_key) -> None:
    for data in ("", "héllo wörld", "x" * 5000):
        signature = base64.b64decode(sign(world, tmp_path, der(rsa_key), data), validate=True)
        rsa_key.public_key().verify(signature, data.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_rsa_sign_refuses_bad_keys(world, tmp_path: Path, rsa_key) -> None:
    good = der(rsa_key)
    pkcs8 = rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())  # fmt: skip
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())  # fmt: skip
    small = der(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    for key, match in (
        (good[:-1], r"input rsa_key: is not a PKCS#1 DER RSA private key"),
        (good[:100], r"input rsa_key: is not a PKCS#1 DER RSA private key"),
        (pem, r"input rsa_key: is not a PKCS#1 DER RSA private key"),
        (pkcs8, r"input rsa_key: is not a PKCS#1 DER RSA private key"),
        (b"\x30\x03\x02\x01\x00", r"input rsa_key: is not a PKCS#1 DER RSA private key"),
        (good + b"\x00", r"input rsa_key: has 1 bytes after the key"),
        (small, r"input rsa_key: the key has 1024 bits; 2048 to 16384 are accepted"),
    ):
        with pytest.raises(TaskRefusedError, match=match) as info:
            sign(world, tmp_path, key)
        assert info.value.status == Status.INPUT_INVALID, match


def der_integers(*values: int) -> bytes:
    """A DER SEQUENCE of INTEGERs (non-negative), as PKCS#1 writes an RSAPrivateKey."""

    def length(n: int) -> bytes:
        if n < 128:
            return bytes([n])
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([0x80 | len(raw)]) + raw

    body = b""
    for v in values:
        raw = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading zero byte keeps it positive
        body += b"\x02" + length(len(raw)) + raw
    return b"\x30" + length(len(body)) + body


def test_rsa_sign_refuses_an_inconsistent_key(world, tmp_path: Path, rsa_key) -> None:
    k = rsa_key.private_numbers()
    assert der_integers(0, k.public_numbers.n, k.public_numbers.e, k.d, k.p, k.q, k.dmp1, k.dmq1, k.iqmp) == der(
        rsa_key
    )
    # the private exponents of no key: the signature the key makes does not verify under it
    wrong = der_integers(0, k.public_numbers.n, k.public_numbers.e, k.d + 2, k.p, k.q, k.dmp1 + 2, k.dmq1, k.iqmp)
    with pytest.raises(TaskRefusedError, match=r"rsa_sign: the signature does not verify under the key") as info:
        sign(world, tmp_path, wrong)
    assert info.value.status == Status.FUNCTION_FAILED
