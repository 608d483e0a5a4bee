"""Mutation fuzzing of every built-in function's input parsers, run by tests/test_native.py in a process
with AddressSanitizer and UBSan preloaded, against the probe built with them. Seeds are Teaclave's cases.

    python fuzz_functions.py PROBE_LIBRARY FIXTURES_DIR MUTATIONS_PER_SLOT
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mesatee import MesateeError
from native.probe import Probe
from test_hostile_input import mutations


def seeds(t: Path) -> list[tuple[str, dict, dict[str, bytes]]]:
    psi = {"input_data1": (t / "ordered_set_intersect/psi0.txt").read_bytes(),
           "input_data2": (t / "ordered_set_intersect/psi1.txt").read_bytes()}  # fmt: skip
    banks = [(t / f"private_join_and_compute/three_party_data/bank_{c}.txt").read_bytes() for c in "abc"]
    gbdt = {"feature_size": 4, "max_depth": 3, "iterations": 3, "shrinkage": 0.1, "feature_sample_ratio": 1.0,
            "data_sample_ratio": 1.0, "min_leaf_size": 1, "loss": "LAD"}  # fmt: skip
    return [
        ("ordered_set_intersect", {}, psi),
        ("private_set_intersection", {}, {"input_data0": psi["input_data1"], "input_data1": psi["input_data2"]}),
        ("ordered_set_join", {"left_column": 0, "right_column": 0},
         {"input_data1": (t / "ordered_set_join/join0.csv").read_bytes(),
          "input_data2": (t / "ordered_set_join/join1.csv").read_bytes()}),
        ("private_join_and_compute", {"num_user": 3}, {f"input_data{i}": b for i, b in enumerate(banks)}),
        ("password_check", {}, {"password": (t / "password_check/password.txt").read_bytes(),
                                "exposed_passwords": (t / "password_check/exposed_passwords.txt").read_bytes()}),
        ("rsa_sign", {"data": "test data"}, {"rsa_key": (t / "rsa_sign/key.der").read_bytes()}),
        ("logistic_regression_train", {"alg_alpha": 0.3, "alg_iters": 3, "feature_size": 30},
         {"training_data": (t / "logistic_regression_training/train.txt").read_bytes()}),
        ("logistic_regression_predict", {},
         {"model_file": (t / "logistic_regression_prediction/model.txt").read_bytes(),
          "data_file": (t / "logistic_regression_prediction/predict_input.txt").read_bytes()}),
        ("principal_components_analysis", {"n": 2, "feature_size": 4},
         {"input_data": (t / "princopal_components_analysis/input.txt").read_bytes()}),
        ("kmeans", {"k": 3, "feature_size": 5},
         {"input_data": (t / "princopal_components_analysis/input.txt").read_bytes()}),
        ("gbdt_train", gbdt, {"training_data": (t / "gbdt_training/train.txt").read_bytes()}),
    ]  # fmt: skip


def main() -> int:
    probe, fixtures, count = Probe(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(20261127)
    cases = seeds(fixtures)
    model = probe("run_function", function="gbdt_train", arguments=cases[-1][1], inputs=cases[-1][2], iterations=1)
    test_data = (fixtures / "gbdt_prediction/test_data.txt").read_bytes()
    cases.append(("gbdt_predict", {}, {"model_file": model["outputs"]["trained_model"], "data_file": test_data}))
    runs = refused = 0
    for function, arguments, inputs in cases:
        probe("run_function", function=function, arguments=arguments, inputs=inputs, iterations=1)  # the seed runs
        for slot, data in inputs.items():
            for bad in mutations(data, rng, count):
                runs += 1
                try:
                    probe("run_function", function=function, arguments=arguments, inputs={**inputs, slot: bad},
                          iterations=1)  # fmt: skip
                except MesateeError:
                    refused += 1
    print(f"{runs} runs, {refused} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
