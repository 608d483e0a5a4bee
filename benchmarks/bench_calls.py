"""Enclave call overhead: a round trip into the enclave and back, beside a bare cffi call.

``mesatee_cffi_noop`` is an empty C function compiled into the same cffi
module, so the baseline is the cost of Python calling C through cffi (GIL
release included) and nothing else. Each sample is a batch of many calls, so
the timer's resolution does not matter; every candidate runs the same loop.
"""

from __future__ import annotations

import tempfile

import harness
import mesatee
from mesatee._bindings import lib

GOAL_NS = 1000.0  # the enclave call's median under 1 µs


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    batch = config.pick(10_000, 2_000)
    with (
        tempfile.TemporaryDirectory(prefix="mesatee-bench-") as platform_dir,
        mesatee.Enclave(platform_dir=platform_dir) as enclave,
    ):
        if lib.mesatee_enclave_ping(enclave._handle) != 0:
            raise RuntimeError("mesatee_enclave_ping failed")
        t = harness.compare(
            [
                harness.Candidate("ping", enclave.ping, batch),
                harness.Candidate("raw", lib.mesatee_enclave_ping, batch, (enclave._handle,)),
                harness.Candidate("noop", lib.mesatee_cffi_noop, batch),
            ],
            # Cheap samples: take more of them than the default.
            harness.Config(quick=config.quick, repeats=config.repeats * 2 + 1, warmup=config.warmup),
        )
    noop = t["noop"].median_ns
    for key, name, timing in (
        ("calls.ping", "enclave.ping()", t["ping"]),
        ("calls.ping_raw", "lib.mesatee_enclave_ping(h)", t["raw"]),
    ):
        report.figures.append(
            harness.Figure(
                id=key,
                name=name,
                unit="ns/call",
                value=timing.median_ns,
                baseline_name="lib.mesatee_cffi_noop()",
                baseline_value=noop,
                goal=harness.Goal(value_below=GOAL_NS),
                samples={timing.name: list(timing.samples_ns), "noop": list(t["noop"].samples_ns)},
            )
        )
    report.notes.append(
        f"Enclave call overhead above a bare cffi call: raw binding {t['raw'].median_ns - noop:,.0f} ns, "
        f"enclave.ping() {t['ping'].median_ns - noop:,.0f} ns (its Python wrapper adds "
        f"{t['ping'].median_ns - t['raw'].median_ns:,.0f} ns: method call, handle check, status check). "
        "On the software platform the boundary is a function call; an SGX transition would cost far more."
    )
    return report


BENCHMARKS = {"calls": run}
