"""gbdt_train and gbdt_predict as real tasks through the enclave: Teaclave's case, LightGBM cross-checks, bad input."""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from mesatee import Status, TaskRefusedError
from task_host import run_function

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave"

TEACLAVE_ARGUMENTS = {
    "feature_size": 4,
    "max_depth": 4,
    "iterations": 100,
    "shrinkage": 0.1,
    "feature_sample_ratio": 1.0,
    "data_sample_ratio": 1.0,
    "min_leaf_size": 1,
    "loss": "LAD",
    "training_optimization_level": 2,
}


@pytest.fixture(scope="module")
def world(task_world):
    enclave, claims, (alice, bob, *_) = task_world
    return enclave, claims, alice, bob


def train(world, tmp_path: Path, data: bytes, **arguments) -> tuple[bytes, bytes]:
    """Alice's data trained in a task of bob's; bob gets the model. Returns (return value, model)."""
    enclave, claims, alice, bob = world
    returned, outputs = run_function(
        enclave, claims, tmp_path / "train", "gbdt_train", bob, arguments=arguments,
        inputs={"training_data": (alice, data)}, outputs={"trained_model": [bob]},
    )  # fmt: skip
    return returned, outputs["trained_model"]


def predict(world, tmp_path: Path, model: bytes, data: bytes) -> tuple[bytes, bytes]:
    """Bob's model over alice's data; alice gets the predictions."""
    enclave, claims, alice, bob = world
    returned, outputs = run_function(
        enclave, claims, tmp_path / "predict", "gbdt_predict", alice,
        inputs={"model_file": (bob, model), "data_file": (alice, data)}, outputs={"result_file": [alice]},
    )  # fmt: skip
    return returned, outputs["result_file"]


def to_csv(x: np.ndarray, y: np.ndarray | None = None) -> bytes:
    rows = x.tolist() if y is None else np.column_stack([x, y]).tolist()
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def values(text: bytes) -> np.ndarray:
    return np.array([float(v) for v in text.decode().splitlines()])


def settings(loss: str, features: int, **overrides) -> dict:
    arguments = dict(TEACLAVE_ARGUMENTS, feature_size=features, loss=loss, max_depth=4, iterations=40, min_leaf_size=20)
    del arguments["training_optimization_level"]
    arguments.update(overrides)
    return arguments


def lightgbm_predict(objective: str, x_train, y_train, x_test, arguments: dict) -> np.ndarray:
    lgb = pytest.importorskip("lightgbm")
    params = {
        "objective": objective, "max_depth": arguments["max_depth"], "num_leaves": 2 ** arguments["max_depth"],
        "learning_rate": arguments["shrinkage"], "min_data_in_leaf": arguments["min_leaf_size"], "max_bin": 255,
        "min_sum_hessian_in_leaf": 1e-3, "bagging_fraction": 1.0, "feature_fraction": 1.0, "num_threads": 1,
        "verbose": -1,
    }  # fmt: skip
    data = lgb.Dataset(x_train, y_train, params={"max_bin": 255, "verbose": -1})
    return lgb.train(params, data, num_boost_round=arguments["iterations"]).predict(x_test)


@contextmanager
def refused(status: Status, message: str):
    """The task is refused with this status and message (so nothing is output)."""
    with pytest.raises(TaskRefusedError, match=re.escape(message)) as info:
        yield info
    assert info.value.status == status, str(info.value)


# --------------------------------------------------------------------------- Teaclave's case


def test_teaclave_iris_lad(world, tmp_path: Path) -> None:
    returned, model = train(
        world, tmp_path, (TEACLAVE / "gbdt_training" / "train.txt").read_bytes(), **TEACLAVE_ARGUMENTS
    )
    assert returned == b"Trained 120 lines of data."
    assert model.startswith(b"mesatee-gbdt-model 1\nloss LAD\nfeature_size 4\n")
    returned, result = predict(world, tmp_path, model, (TEACLAVE / "gbdt_prediction" / "test_data.txt").read_bytes())
    assert returned == b"Predict result has 30 lines of data."
    lines = result.decode().splitlines()
    assert result.endswith(b"\n") and all(len(line.split(".")[1]) == 10 for line in lines)
    expected = values((TEACLAVE / "gbdt_prediction" / "expected_result.txt").read_bytes())
    got = values(result)
    assert len(got) == len(expected) == 30
    assert [round(v) for v in got] == [round(v) for v in expected]
    assert np.max(np.abs(got - expected)) < 1e-3  # LAD converges to the labels as Teaclave's model does


# --------------------------------------------------------------------------- against LightGBM


def test_loglikelyhood_auc_matches_lightgbm(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = datasets.make_classification(n_samples=4000, n_features=12, n_informative=6, random_state=3)
    x_train, y_train, x_test, y_test = x[:3000], y[:3000], x[3000:], y[3000:]
    arguments = settings("LogLikelyhood", 12)
    _, model = train(world, tmp_path, to_csv(x_train, y_train), **arguments)
    _, result = predict(world, tmp_path, model, to_csv(x_test))
    ours = values(result)
    assert np.all((ours > 0) & (ours < 1))  # probabilities of the label 1
    reference = lightgbm_predict("binary", x_train, y_train, x_test, arguments)
    auc, auc_lightgbm = metrics.roc_auc_score(y_test, ours), metrics.roc_auc_score(y_test, reference)
    assert abs(auc - auc_lightgbm) < 0.01, (auc, auc_lightgbm)
    # Teaclave's labels -1/1 train the same model as 0/1
    _, model_pm = train(world, tmp_path / "pm", to_csv(x_train, 2 * y_train - 1), **arguments)
    assert model_pm == model


def test_squared_error_rmse_matches_lightgbm(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.make_regression(n_samples=4000, n_features=8, n_informative=5, noise=10.0, random_state=4)
    x_train, y_train, x_test, y_test = x[:3000], y[:3000], x[3000:], y[3000:]
    arguments = settings("SquaredError", 8)
    _, model = train(world, tmp_path, to_csv(x_train, y_train), **arguments)
    _, result = predict(world, tmp_path, model, to_csv(x_test))
    rmse = math.sqrt(np.mean((values(result) - y_test) ** 2))
    reference = lightgbm_predict("regression", x_train, y_train, x_test, arguments)
    rmse_lightgbm = math.sqrt(np.mean((reference - y_test) ** 2))
    assert abs(rmse - rmse_lightgbm) < 0.03 * rmse_lightgbm, (rmse, rmse_lightgbm)


def test_lad_mae_matches_lightgbm(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.make_regression(n_samples=4000, n_features=8, n_informative=5, noise=10.0, random_state=5)
    rng = np.random.default_rng(5)
    y = y + rng.standard_cauchy(len(y)) * 5  # heavy tails, where absolute error is the loss to use
    x_train, y_train, x_test, y_test = x[:3000], y[:3000], x[3000:], y[3000:]
    arguments = settings("LAD", 8)
    _, model = train(world, tmp_path, to_csv(x_train, y_train), **arguments)
    _, result = predict(world, tmp_path, model, to_csv(x_test))
    mae = np.mean(np.abs(values(result) - y_test))
    mae_lightgbm = np.mean(np.abs(lightgbm_predict("l1", x_train, y_train, x_test, arguments) - y_test))
    assert abs(mae - mae_lightgbm) < 0.05 * mae_lightgbm, (mae, mae_lightgbm)


# --------------------------------------------------------------------------- the model format, determinism


def predict_from_documented_format(model: bytes, x: np.ndarray) -> np.ndarray:
    """docs/functions/gbdt.md's model format, read independently of the enclave."""
    lines = model.decode().splitlines()
    assert lines[0] == "mesatee-gbdt-model 1"
    loss, initial, trees = lines[1].split()[1], float(lines[3].split()[1]), int(lines[4].split()[1])
    at, forest = 5, []
    for _ in range(trees):
        count = int(lines[at].split()[1])
        forest.append([line.split() for line in lines[at + 1 : at + 1 + count]])
        at += 1 + count
    assert lines[at:] == ["end"]
    out = []
    for row in x:
        score = initial
        for tree in forest:
            node = tree[0]
            while node[0] == "split":
                node = tree[int(node[3])] if row[int(node[1])] <= float(node[2]) else tree[int(node[4])]
            score += float(node[1])
        out.append(1 / (1 + math.exp(-score)) if loss == "LogLikelyhood" else score)
    return np.array(out)


def test_sampling_is_seeded_and_the_format_is_as_documented(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.make_classification(n_samples=800, n_features=6, random_state=6)
    data = to_csv(x, y)
    arguments = settings("LogLikelyhood", 6, feature_sample_ratio=0.5, data_sample_ratio=0.7, iterations=10, seed=7)
    _, first = train(world, tmp_path / "1", data, **arguments)
    _, second = train(world, tmp_path / "2", data, **arguments)
    assert first == second
    _, other_seed = train(world, tmp_path / "3", data, **dict(arguments, seed=8))
    assert other_seed != first
    _, result = predict(world, tmp_path, first, to_csv(x[:50]))
    assert np.allclose(values(result), predict_from_documented_format(first, x[:50]), atol=2e-10)


def test_edge_cases(world, tmp_path: Path) -> None:
    one_row = settings("SquaredError", 2, min_leaf_size=1, iterations=3, shrinkage=1.0)
    returned, model = train(world, tmp_path / "one", b"1,2,5\n", **one_row)
    assert returned == b"Trained 1 lines of data."
    assert predict(world, tmp_path / "one", model, b"7,7\n")[1] == b"5.0000000000\n"
    # constant features cannot be split on: every tree is one leaf, the prediction the mean
    _, model = train(world, tmp_path / "constant", b"1,1,0\n1,1,2\n1,1,4\n", **one_row)
    assert predict(world, tmp_path / "constant", model, b"0,9\n")[1] == b"2.0000000000\n"
    # huge labels print in full
    _, model = train(world, tmp_path / "huge", b"1,2,1e100\n2,1,1e100\n", **one_row)
    assert float(predict(world, tmp_path / "huge", model, b"1,2\n")[1]) == pytest.approx(1e100)


def test_declaration(world) -> None:
    declared = world[0].functions()
    train_arguments = {a.name: a for a in declared["gbdt_train"].arguments}
    assert set(train_arguments) == {*TEACLAVE_ARGUMENTS, "seed"}
    assert train_arguments["loss"].choices == ("SquaredError", "LAD", "LogLikelyhood")
    assert (train_arguments["iterations"].min, train_arguments["iterations"].max) == (1, 10000)
    assert (train_arguments["seed"].required, train_arguments["seed"].default) == (False, 0)
    assert [s.name for s in declared["gbdt_train"].outputs] == ["trained_model"]
    assert [s.name for s in declared["gbdt_predict"].inputs] == ["model_file", "data_file"]
    assert [s.name for s in declared["gbdt_predict"].outputs] == ["result_file"]


# --------------------------------------------------------------------------- refused


GOOD_TRAINING = b"1,2,0\n2,1,1\n3,0,0\n4,1,1\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"1,2,0\n2,1\n", "input training_data, line 2: has 2 columns, expected 3"),
        (b"1,2,0\n2,x,1\n", "input training_data, line 2: column 2 is not a number"),
        (b"1,2,0\n2,nan,1\n", "input training_data, line 2: column 2 is not a number"),
        (b"", "input training_data is empty"),
        (b"1,2,0\n\n2,1,1\n", "input training_data, line 2: empty line"),
        (b"1,2,0\n2,1,2\n", "input training_data, line 2: the label must be 1, 0 or -1 for LogLikelyhood"),
    ],
)
def test_bad_training_data(world, tmp_path: Path, data: bytes, message: str) -> None:
    with refused(Status.INPUT_INVALID, message):
        train(world, tmp_path, data, **settings("LogLikelyhood", 2, min_leaf_size=1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data_sample_ratio": 0.0}, "argument data_sample_ratio must be greater than 0"),
        ({"feature_sample_ratio": 1.5}, "argument feature_sample_ratio must be at most 1"),
        ({"shrinkage": -0.1}, "argument shrinkage must be at least 0"),
        ({"max_depth": 21}, "argument max_depth must be at most 20"),
        ({"iterations": 0}, "argument iterations must be at least 1"),
        ({"iterations": 10001}, "argument iterations must be at most 10000"),
        ({"min_leaf_size": 0}, "argument min_leaf_size must be at least 1"),
        ({"loss": "Huber"}, "argument loss must be one of: SquaredError, LAD, LogLikelyhood"),
        ({"seed": -1}, "argument seed must be at least 0"),
        ({"training_optimization_level": 3}, "argument training_optimization_level must be at most 2"),
        ({"feature_size": "2"}, "argument feature_size must be an integer"),
    ],
)
def test_bad_arguments(world, tmp_path: Path, change: dict, message: str) -> None:
    with refused(Status.ARGUMENT_INVALID, message):
        train(world, tmp_path, GOOD_TRAINING, **dict(settings("LogLikelyhood", 2, min_leaf_size=1), **change))


def test_bad_prediction_data(world, tmp_path: Path) -> None:
    _, model = train(world, tmp_path, GOOD_TRAINING, **settings("LogLikelyhood", 2, min_leaf_size=1, iterations=3))
    with refused(Status.INPUT_INVALID, "input data_file, line 2: has 3 columns, expected 2"):
        predict(world, tmp_path / "columns", model, b"1,2\n1,2,0\n")
    with refused(Status.INPUT_INVALID, "input data_file, line 1: column 1 is not a number"):
        predict(world, tmp_path / "number", model, b"one,2\n")
    with refused(Status.INPUT_INVALID, "input data_file is empty"):
        predict(world, tmp_path / "empty", model, b"")


MODEL = (
    b"mesatee-gbdt-model 1\nloss SquaredError\nfeature_size 2\ninitial_prediction 0.5\ntrees 2\n"
    b"tree 3\nsplit 1 1.5 1 2\nleaf -0.25\nleaf 0.25\n"
    b"tree 1\nleaf 0.125\nend\n"
)


def test_a_handwritten_model_predicts_as_documented(world, tmp_path: Path) -> None:
    returned, result = predict(world, tmp_path, MODEL, b"0,1\n0,2\n")
    assert returned == b"Predict result has 2 lines of data."
    assert result == b"0.3750000000\n0.8750000000\n"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"mesatee-gbdt-model 1", b'{"conf": 1}', "line 1: not a mesatee-gbdt-model"),
        (b"mesatee-gbdt-model 1", b"mesatee-gbdt-model 2", "line 1: unsupported model version"),
        (b"loss SquaredError", b"loss Huber", "line 2: loss must be SquaredError, LAD or LogLikelyhood"),
        (b"feature_size 2", b"feature_size 0", "line 3: column 2 must be an integer from 1 to 100000"),
        (b"initial_prediction 0.5", b"initial_prediction inf", "line 4: column 2 is not a number"),
        (b"trees 2", b"trees 3", "line 12: expected tree"),
        (b"trees 2", b"trees 1", "line 10: expected end"),
        (b"trees 2", b"trees 10001", "line 5: column 2 must be an integer from 1 to 10000"),
        (b"tree 3\n", b"tree 4\n", "line 10: expected split or leaf"),
        (b"tree 3\n", b"tree 99\n", "line 6: the tree has more nodes than the model has lines"),
        (b"split 1 1.5", b"split 2 1.5", "line 7: column 2 must be an integer from 0 to 1"),
        (b"1.5 1 2", b"1.5 0 2", "line 7: column 4 must be an integer from 1 to 2"),
        (b"1.5 1 2", b"1.5 1 1", "line 7: a node is the child of more than one split"),
        (b"1.5 1 2", b"1.5 1", "line 7: split takes 4 values"),
        (b"leaf -0.25", b"leaf", "line 8: leaf takes 1 value"),
        (b"leaf -0.25", b"leaf --0.25", "line 8: column 2 is not a number"),
        (b"tree 1\nleaf 0.125\n", b"tree 1\n", "line 11: expected split or leaf"),
        (b"end\n", b"", "line 12: the model ends early (expected end)"),
        (b"end\n", b"end\nend\n", "line 13: unexpected line after the end"),
        (b"end\n", b"\nend\n", "line 12: empty line"),
    ],
)
def test_tampered_model(world, tmp_path: Path, old: bytes, new: bytes, message: str) -> None:
    assert old in MODEL
    with refused(Status.INPUT_INVALID, f"input model_file, {message}"):
        predict(world, tmp_path, MODEL.replace(old, new, 1), b"0,1\n")


def test_truncated_model(world, tmp_path: Path) -> None:
    _, model = train(world, tmp_path, GOOD_TRAINING, **settings("SquaredError", 2, min_leaf_size=1, iterations=2))
    for cut in (len(model) // 3, len(model) - 3, len(model) - 6):
        with refused(Status.INPUT_INVALID, "input model_file, line"):
            predict(world, tmp_path / str(cut), model[:cut], b"0,1\n")
