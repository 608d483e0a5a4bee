"""Set intersection and private join-and-compute inside the enclave, against plain Python on the plaintext.

Two timings per function:
- "whole invoke": ``enclave.invoke`` of a prepared task, so the figure includes the
  protocol (approvals checked, grants opened, inputs checked and decrypted, outputs
  encrypted for their owners, return value sealed, receipt signed);
- "decrypting ... inputs": the inputs decrypted (MTEF) and the built-in run, inside the trusted code
  (tests/native/probe.cpp, the "run_function" op), no protocol.
The baselines are what a user would otherwise run on the plaintext, in the same run.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from native.probe import Probe, build_probe


def _probe() -> Probe:
    return build_probe(Path(__file__).resolve().parents[1] / "build" / "probe")


def _hex_lines(n: int, shared: list[bytes], seed: int) -> bytes:
    """n lines of 32 hex characters, `shared` among them, in random order."""
    own = os.urandom(16 * (n - len(shared))).hex().encode()
    items = shared + [own[i : i + 32] for i in range(0, len(own), 32)]
    random.Random(seed).shuffle(items)
    return b"\n".join(items) + b"\n"


def python_intersection(a: bytes, b: bytes) -> set[bytes]:
    """The baseline: split both texts into lines, intersect Python sets."""
    return set(a.split(b"\n")) & set(b.split(b"\n"))


def python_join_and_compute(texts: list[bytes]) -> list[tuple[bytes, int]]:
    """The baseline: parse `id : amount` lines, sum per id, keep the ids every input holds, sorted."""
    sums: dict[bytes, int] = {}
    held = []
    for text in texts:
        ids = set()
        for line in text.splitlines():
            ident, _, amount = line.partition(b" : ")
            sums[ident] = sums.get(ident, 0) + int(amount)
            ids.add(ident)
        held.append(ids)
    return [(i, sums[i]) for i in sorted(set.intersection(*held))]


def _bank(ids: list[int], seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"u%08d : %d\n" % (i, rng.randrange(1_000_000)) for i in ids)


def _native_s(probe: Probe, function: str, arguments: dict, inputs: dict[str, bytes], repeats: int) -> float:
    """Median seconds of one run inside the trusted code: decrypting the inputs (MTEF files), then the function."""
    import os

    from mesatee.core import files

    keys = {slot: os.urandom(32) for slot in inputs}
    encrypted = {slot: files.encrypt_bytes(data, keys[slot]) for slot, data in inputs.items()}
    request = {"iterations": 1, "function": function, "arguments": arguments, "inputs": encrypted, "keys": keys}
    probe("run_function", **request)  # warm-up
    return statistics.median(probe("run_function", **request)["ns"] / 1e9 for _ in range(repeats))


def run(config: harness.Config) -> harness.Report:
    import mesatee
    from mesatee.core.manifest import TaskResult
    from mesatee.parties import Party
    from task_host import attest, prepare

    report = harness.Report()
    heavy = harness.Config(quick=config.quick, repeats=min(config.repeats, 5), warmup=config.warmup)
    n = config.pick(1 << 20, 1 << 10)
    lines_per_bank = config.pick(1_000_000, 1000)
    probe = _probe()

    # the data: two sets of n hex lines, half shared; three banks of lines_per_bank ids
    shared = [x.hex().encode() for x in (os.urandom(16) for _ in range(n // 2))]
    a, b = _hex_lines(n, shared, 1), _hex_lines(n, shared, 2)
    sorted_a = b"\n".join(sorted(a.split())) + b"\n"
    sorted_b = b"\n".join(sorted(b.split())) + b"\n"
    rng = random.Random(5)
    universe = rng.sample(range(10**8), lines_per_bank * 3 // 2)
    banks = [_bank(rng.sample(universe, lines_per_bank), seed) for seed in range(3)]
    assert len(python_intersection(a, b) - {b""}) == n // 2

    with (
        tempfile.TemporaryDirectory(prefix="mesatee-bench-") as folder,
        mesatee.Enclave(platform_dir=Path(folder) / "platform") as enclave,
    ):
        parties = [Party.generate() for _ in range(3)]
        claims = attest(enclave, Path(folder) / "platform", parties[0])

        def invocation(name: str, function: str, arguments: dict, inputs: dict[str, bytes], outputs: list[str]):
            task = prepare(
                Path(folder) / name, claims, parties[0], function, arguments=arguments,
                inputs={slot: (parties[i], data) for i, (slot, data) in enumerate(inputs.items())},
                outputs={slot: [parties[i]] for i, slot in enumerate(outputs)},
            )  # fmt: skip
            request = task.invocation()
            result = TaskResult.from_bytes(enclave.invoke(request))  # check it runs, and what it returns
            return request, parties[0].open_result(result, task.manifest, claims).return_value

        psi_inputs = {"input_data0": a, "input_data1": b}
        psi, value = invocation("psi", "private_set_intersection", {}, psi_inputs, ["output_data0", "output_data1"])
        assert value == f"{n // 2} common items".encode(), value
        osi, value = invocation(
            "osi", "ordered_set_intersect", {}, {"input_data1": sorted_a, "input_data2": sorted_b},
            ["output_result1", "output_result2"],
        )  # fmt: skip
        assert value == f"{n // 2} common items".encode(), value
        pjc_inputs = {f"input_data{i}": bank for i, bank in enumerate(banks)}
        pjc, value = invocation(
            "pjc", "private_join_and_compute", {"num_user": 3}, pjc_inputs, [f"output_data{i}" for i in range(3)]
        )
        assert value == b"3 users join the task in total."

        t = harness.compare(
            [
                harness.Candidate("psi", enclave.invoke, 1, (psi,)),
                harness.Candidate("osi", enclave.invoke, 1, (osi,)),
                harness.Candidate("python sets", python_intersection, 1, (a, b)),
            ],
            heavy,
        )
        u = harness.compare(
            [
                harness.Candidate("pjc", enclave.invoke, 1, (pjc,)),
                harness.Candidate("python dict", python_join_and_compute, 1, (banks,)),
            ],
            heavy,
        )
    s = {name: timing.median_ns / 1e9 for name, timing in (t | u).items()}
    psi_alone = _native_s(probe, "private_set_intersection", {}, psi_inputs, heavy.repeats)
    osi_alone = _native_s(
        probe, "ordered_set_intersect", {}, {"input_data1": sorted_a, "input_data2": sorted_b}, heavy.repeats
    )
    pjc_alone = _native_s(probe, "private_join_and_compute", {"num_user": 3}, pjc_inputs, heavy.repeats)

    size = f"{n:,} x {n:,} lines"
    base = "Python set(a) & set(b), split included"
    goal = harness.Goal(ratio_at_least=3)
    report.figures += [
        harness.Figure(
            id="sets.psi.decrypt", name=f"private_set_intersection {size}, decrypting both inputs", unit="sets/s",
            value=1 / psi_alone, baseline_name=base, baseline_value=1 / s["python sets"], goal=goal,
        ),
        harness.Figure(
            id="sets.osi.decrypt", name=f"ordered_set_intersect {size} (sorted), decrypting both inputs",
            unit="sets/s", value=1 / osi_alone, baseline_name=base, baseline_value=1 / s["python sets"], goal=goal,
        ),
        harness.Figure(
            id="sets.psi.invoke", name=f"private_set_intersection {size}, whole invoke (protocol incl.)",
            unit="sets/s", value=1 / s["psi"], baseline_name=base, baseline_value=1 / s["python sets"],
        ),
        harness.Figure(
            id="sets.osi.invoke", name=f"ordered_set_intersect {size} (sorted), whole invoke (protocol incl.)",
            unit="sets/s", value=1 / s["osi"], baseline_name=base, baseline_value=1 / s["python sets"],
        ),
        harness.Figure(
            id="sets.pjc.invoke", name=f"private_join_and_compute 3 x {lines_per_bank:,} lines, whole invoke",
            unit="runs/s", value=1 / s["pjc"], baseline_name="Python dicts (parse, sum, intersect, sort)",
            baseline_value=1 / s["python dict"], goal=goal,
        ),
        harness.Figure(
            id="sets.pjc.decrypt", name=f"private_join_and_compute 3 x {lines_per_bank:,} lines, decrypting inputs",
            unit="runs/s", value=1 / pjc_alone, baseline_name="Python dicts (parse, sum, intersect, sort)",
            baseline_value=1 / s["python dict"],
        ),
    ]  # fmt: skip
    report.notes.append(
        f"Set intersection of {size} (32 hex characters, half shared): whole invoke {s['psi'] * 1e3:.1f} ms "
        f"(hashing), {s['osi'] * 1e3:.1f} ms (sorted merge); decrypting and the function {psi_alone * 1e3:.1f} ms / "
        f"{osi_alone * 1e3:.1f} ms; Python sets {s['python sets'] * 1e3:.1f} ms. A whole invoke includes "
        "checking the approvals, opening the grants, checking and decrypting both inputs, encrypting each output "
        "for its owner, sealing the return value and signing the receipt."
    )
    report.notes.append(
        f"private_join_and_compute, 3 x {lines_per_bank:,} lines: whole invoke {s['pjc'] * 1e3:.1f} ms, "
        f"decrypting and the function {pjc_alone * 1e3:.1f} ms; Python dicts {s['python dict'] * 1e3:.1f} ms."
    )
    return report


BENCHMARKS = {"sets": run}
