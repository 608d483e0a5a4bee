"""GBDT training: mesatee's gbdt_train (C++, one thread) beside LightGBM (one thread), same data and parameters.

mesatee is timed inside the trusted code (tests/native/probe.cpp, "run_function"): gbdt_train from the
in-memory CSV, so its figure includes parsing the text and binning; LightGBM's includes building its Dataset
(binning) from a numpy array. Held-out AUCs of both models are reported in a note.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from native.probe import build_probe


def _csv(x, y=None) -> bytes:
    import numpy as np

    rows = x if y is None else np.column_stack([x, y])
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows.tolist()).encode()


def run(config: harness.Config) -> harness.Report:
    import lightgbm
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.metrics import roc_auc_score

    report = harness.Report()
    probe = build_probe(Path(__file__).resolve().parents[1] / "build" / "probe")
    rows, trees, depth, features = config.pick(100_000, 2_000), config.pick(100, 5), 6, 20
    held_out = config.pick(20_000, 1_000)
    x, y = make_classification(n_samples=rows + held_out, n_features=features, n_informative=10, random_state=0)
    x_train, y_train, x_test, y_test = x[:rows], y[:rows], x[rows:], y[rows:]
    training_csv, test_csv = _csv(x_train, y_train), _csv(x_test)
    arguments = {
        "feature_size": features, "max_depth": depth, "iterations": trees, "shrinkage": 0.1,
        "feature_sample_ratio": 1.0, "data_sample_ratio": 1.0, "min_leaf_size": 20, "loss": "LogLikelyhood",
    }  # fmt: skip
    params = {
        "objective": "binary", "num_leaves": 2**depth, "max_depth": depth, "learning_rate": 0.1,
        "min_data_in_leaf": 20, "min_sum_hessian_in_leaf": 1e-3, "max_bin": 255, "bagging_fraction": 1.0,
        "feature_fraction": 1.0, "num_threads": 1, "verbose": -1,
    }  # fmt: skip

    def mesatee_train() -> dict:
        return probe("run_function", function="gbdt_train", arguments=arguments,
                     inputs={"training_data": training_csv}, iterations=1)  # fmt: skip

    def lightgbm_train():
        data = lightgbm.Dataset(x_train, y_train, params={"max_bin": 255, "verbose": -1})
        return lightgbm.train(params, data, num_boost_round=trees)

    # Trainings take about a second each at full size: a few interleaved samples are enough.
    timing = harness.compare(
        [harness.Candidate("mesatee", mesatee_train, 1), harness.Candidate("lightgbm", lightgbm_train, 1)],
        dataclasses.replace(config, repeats=min(config.repeats, 5), warmup=1),
    )
    seconds = {name: t.median_ns / 1e9 for name, t in timing.items()}
    report.figures.append(
        harness.Figure(
            id="gbdt.train", unit="trees/s", value=trees / seconds["mesatee"],
            name=f"gbdt_train {rows // 1000}k x {features} binary, {trees} trees depth {depth}, 1 thread "
                 "(C++ probe: CSV parse + binning + training)",
            baseline_name="LightGBM 1 thread (Dataset from numpy + train)", baseline_value=trees / seconds["lightgbm"],
            goal=harness.Goal(ratio_at_least=0.5),
            samples={name: list(t.samples_ns) for name, t in timing.items()},
        )
    )  # fmt: skip

    model = mesatee_train()["outputs"]["trained_model"]
    predicted = probe("run_function", function="gbdt_predict", arguments={},
                      inputs={"model_file": model, "data_file": test_csv}, iterations=1)  # fmt: skip
    ours = np.array([float(v) for v in predicted["outputs"]["result_file"].split()])
    auc, auc_lightgbm = roc_auc_score(y_test, ours), roc_auc_score(y_test, lightgbm_train().predict(x_test))
    report.notes.append(
        f"gbdt_train: {seconds['mesatee']:.2f} s vs LightGBM {seconds['lightgbm']:.2f} s "
        f"({seconds['mesatee'] / seconds['lightgbm']:.2f}x the time; goal <= 2x, floor 4x); held-out AUC "
        f"{auc:.4f} vs LightGBM {auc_lightgbm:.4f} (|diff| {abs(auc - auc_lightgbm):.4f}, must be < 0.01); "
        f"medians of {len(timing['mesatee'].samples_ns)} interleaved samples each."
    )
    return report


BENCHMARKS = {"gbdt": run}
