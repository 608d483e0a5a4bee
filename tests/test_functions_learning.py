"""The learning built-ins as whole tasks through the real enclave: Teaclave's cases, cross-checks
against numpy and scikit-learn on generated data, and malformed inputs refused with their line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from mesatee import Status, TaskRefusedError
from task_host import run_function

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave"


@pytest.fixture(scope="module")
def world(task_world):
    enclave, claims, (alice, bob, _, _) = task_world
    return enclave, claims, alice, bob


def csv(rows: np.ndarray) -> bytes:
    """Shortest round-trip decimals, as the enclave reads them back exactly."""
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in np.atleast_2d(rows)).encode()


def parse(data: bytes) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in data.decode().splitlines()])


def call(world, tmp_path: Path, function: str, arguments: dict, inputs: dict[str, bytes], outputs: list[str]):
    enclave, claims, alice, bob = world
    owners = [alice, bob]
    return run_function(
        enclave, claims, tmp_path, function, alice, arguments=arguments,
        inputs={slot: (owners[i % 2], data) for i, (slot, data) in enumerate(inputs.items())},
        outputs={slot: [alice] for slot in outputs},
    )  # fmt: skip


def refused(world, tmp_path, function, arguments, inputs, outputs, status: Status, match: str, secret: str = ""):
    with pytest.raises(TaskRefusedError, match=match) as info:
        call(world, tmp_path, function, arguments, inputs, outputs)
    assert info.value.status == status, str(info.value)
    if secret:
        assert secret not in str(info.value)


def train(world, tmp_path, data: bytes, **arguments):
    value, out = call(world, tmp_path, "logistic_regression_train", arguments, {"training_data": data}, ["model_file"])
    return value, out["model_file"]


def objective(beta: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> float:
    z = beta[0] + x @ beta[1:]
    return float(np.mean(np.logaddexp(0, z) - y * z) + l2 / 2 * beta[1:] @ beta[1:])


def logistic_data(rng: np.random.Generator, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((m, d))
    truth = rng.standard_normal(d)
    y = (rng.random(m) < 1 / (1 + np.exp(-(x @ truth - 0.3)))).astype(float)
    return x, y


# --------------------------------------------------------------------------- Teaclave's cases


def test_teaclave_logistic_regression_training(world, tmp_path: Path) -> None:
    case = TEACLAVE / "logistic_regression_training"
    arguments = {"alg_alpha": 0.3, "alg_iters": 100, "feature_size": 30}
    value, model = train(world, tmp_path, (case / "train.txt").read_bytes(), **arguments)
    assert value == b"Trained 100 lines of data."
    got, expected = json.loads(model), json.loads((case / "expected_model.txt").read_text())
    assert list(got) == ["alpha", "iters", "parameters"]
    assert (got["alpha"], got["iters"]) == (0.3, 100)
    np.testing.assert_allclose(got["parameters"], expected["parameters"], rtol=0, atol=1e-9)


def test_teaclave_logistic_regression_prediction(world, tmp_path: Path) -> None:
    case = TEACLAVE / "logistic_regression_prediction"
    value, out = call(
        world, tmp_path, "logistic_regression_predict", {},
        {"model_file": (case / "model.txt").read_bytes(), "data_file": (case / "predict_input.txt").read_bytes()},
        ["result_file"],
    )  # fmt: skip
    assert value == b"Predicted 5 lines of data."
    assert out["result_file"] == (case / "expected_result.txt").read_bytes()


def test_teaclave_principal_components_analysis(world, tmp_path: Path) -> None:
    case = TEACLAVE / "princopal_components_analysis"
    value, out = call(
        world, tmp_path, "principal_components_analysis", {"n": 2, "feature_size": 4, "center": True},
        {"input_data": (case / "input.txt").read_bytes()}, ["output_data"],
    )  # fmt: skip
    assert value == b"transform 90 rows * 2 cols lines of data."
    got, expected = parse(out["output_data"]), parse((case / "expected_result.txt").read_bytes())
    assert got.shape == expected.shape == (90, 2)
    for c in range(2):
        sign = np.sign(got[0, c] * expected[0, c])
        np.testing.assert_allclose(sign * got[:, c], expected[:, c], rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- cross-checks


# Rows and features around the core's blocks of rows and groups of 4 (remainders 0 to 3).
@pytest.mark.parametrize("rows, features", [(200, 6), (203, 8), (61, 1), (46, 37)])
def test_gradient_descent_equals_numpy_with_and_without_l2(world, tmp_path: Path, rows: int, features: int) -> None:
    x, y = logistic_data(np.random.default_rng(1), rows, features)
    data = csv(np.column_stack([x, y]))
    for l2 in (0.0, 0.05):
        _, model = train(world, tmp_path / str(l2), data, alg_alpha=0.5, alg_iters=40, feature_size=features, l2=l2)
        x1, beta = np.column_stack([np.ones(len(x)), x]), np.full(features + 1, 0.5)
        for _ in range(40):
            grad = x1.T @ (1 / (1 + np.exp(-(x1 @ beta))) - y) / len(x)
            grad[1:] += l2 * beta[1:]
            beta = beta - 0.5 * grad
        np.testing.assert_allclose(json.loads(model)["parameters"], beta, rtol=0, atol=1e-12)


def test_gradient_sigmoid_is_accurate(probe) -> None:
    """The gradient's own sigmoid (no libm call) against 1 / (1 + e^-z) in long double."""

    def sigmoid(z: np.ndarray) -> np.ndarray:
        reply = probe("bench", what="learning_sigmoid", iterations=1, data=z.tobytes(), cols=1, extra=b"")
        return np.frombuffer(reply["result"])

    rng = np.random.default_rng(7)
    z = np.concatenate([np.linspace(-708, 708, 400_001), rng.uniform(-40, 40, 400_000), [0.0, -0.0, 1e-300]])
    got = sigmoid(z)
    exact = 1 / (1 + np.exp(-z.astype(np.longdouble)))
    ulps = np.abs(got - exact) / np.spacing(exact.astype(float))
    assert ulps.max() <= 2.5  # as the formula with a correctly rounded exp: 1 + e and the division round too
    beyond = np.array([-709.0, -745.0, -1e300, -np.inf, 709.0, 1e300, np.inf, np.nan])
    got = sigmoid(beyond)
    np.testing.assert_allclose(got[:-1], [0, 0, 0, 0, 1, 1, 1], rtol=0, atol=1e-307)
    assert np.isnan(got[-1])


@pytest.mark.parametrize("l2", [0.0, 0.01, 0.5])
def test_lbfgs_matches_scikit_learn(world, tmp_path: Path, l2: float) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = logistic_data(np.random.default_rng(2), 400, 8)
    arguments = {"alg_alpha": 0.1, "alg_iters": 500, "feature_size": 8, "solver": "lbfgs", "l2": l2}
    value, model = train(world, tmp_path, csv(np.column_stack([x, y])), **arguments)
    assert value == b"Trained 400 lines of data."
    ours = np.array(json.loads(model)["parameters"])
    # scikit-learn minimizes C * sum(log-loss) + |w|^2 / 2: the same minimizer as ours when C = 1 / (l2 * m).
    sk = LogisticRegression(C=np.inf if l2 == 0 else 1 / (l2 * len(x)), solver="lbfgs", tol=1e-10, max_iter=10_000)
    sk.fit(x, y)
    theirs = np.concatenate([sk.intercept_, sk.coef_[0]])
    assert abs(objective(ours, x, y, l2) - objective(theirs, x, y, l2)) < 1e-3
    assert objective(ours, x, y, l2) <= objective(theirs, x, y, l2) + 1e-9
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_trained_model_predicts_what_numpy_computes(world, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x, y = logistic_data(rng, 150, 4)
    _, model = train(world, tmp_path / "t", csv(np.column_stack([x, y])), alg_alpha=1.0, alg_iters=30, feature_size=4)
    fresh = rng.standard_normal((25, 4)) * 3
    value, out = call(
        world, tmp_path / "p", "logistic_regression_predict", {}, {"model_file": model, "data_file": csv(fresh)},
        ["result_file"],
    )  # fmt: skip
    assert value == b"Predicted 25 lines of data."
    beta = np.array(json.loads(model)["parameters"])
    expected = "".join(f"{p:.4f}\n" for p in 1 / (1 + np.exp(-(beta[0] + fresh @ beta[1:]))))
    assert out["result_file"].decode() == expected


def degenerate(rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((80, 6)) * [5, 3, 1, 1, 1, 1]
    x[:, 3] = x[:, 0]  # a repeated column, and a constant one: X'X is singular
    x[:, 5] = 2.5
    return x


@pytest.mark.parametrize(
    ("center", "shape"), [(True, (120, 7)), (False, (120, 7)), (True, (60, 90)), (True, "degenerate")]
)
def test_pca_matches_numpy_svd(world, tmp_path: Path, center: bool, shape) -> None:
    rng = np.random.default_rng(4)
    if shape == "degenerate":
        x = degenerate(rng)
    else:
        m, d = shape
        x = rng.standard_normal((m, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d) * 3
    m, d = x.shape
    labels = rng.integers(0, 3, (m, 1))
    value, out = call(
        world, tmp_path, "principal_components_analysis", {"n": 3, "feature_size": d, "center": center},
        {"input_data": csv(np.column_stack([x, labels]))}, ["output_data"],
    )  # fmt: skip
    assert value == f"transform {m} rows * 3 cols lines of data.".encode()
    got = parse(out["output_data"])
    xc = x - x.mean(axis=0) if center else x
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    components = vt[:3].T
    # The documented sign: each component's entry of largest magnitude is positive.
    components *= np.sign(components[np.abs(components).argmax(axis=0), range(3)])
    np.testing.assert_allclose(got, xc @ components, rtol=0, atol=1e-9)


def blobs(rng: np.random.Generator, k: int, d: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.uniform(-20, 20, (k, d))
    x = np.concatenate([c + rng.standard_normal((per, d)) * 0.8 for c in centers])
    return x[rng.permutation(len(x))], centers


def test_kmeans_matches_scikit_learn_from_the_same_centers(world, tmp_path: Path) -> None:
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(5)
    x, _ = blobs(rng, 5, 3, 60)
    start = x[rng.choice(len(x), 5, replace=False)]
    arguments = {"k": 5, "feature_size": 3, "max_iterations": 100, "tolerance": 0.0}
    arguments["initial_centers"] = csv(start).decode()
    value, out = call(world, tmp_path, "kmeans", arguments, {"input_data": csv(x)}, ["model_file", "assignments"])
    assert value.startswith(b"Clustered 300 lines of data into 5 clusters in ")
    sk = KMeans(n_clusters=5, init=start, n_init=1, algorithm="lloyd", max_iter=100, tol=0.0).fit(x)
    assert [int(v) for v in out["assignments"].split()] == sk.labels_.tolist()
    np.testing.assert_allclose(parse(out["model_file"]), sk.cluster_centers_, rtol=0, atol=1e-6)


def test_kmeans_plus_plus_is_seeded_and_finds_separated_clusters(world, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x, centers = blobs(rng, 4, 2, 50)
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        _, runs[name] = call(
            world, tmp_path / name, "kmeans", {"k": 4, "feature_size": 2, "seed": seed}, {"input_data": csv(x)},
            ["model_file", "assignments"],
        )  # fmt: skip
    assert runs["a"] == runs["b"]
    for run in (runs["a"], runs["c"]):
        found = parse(run["model_file"])
        assert found.shape == (4, 2)
        # every true center has a found one nearby, and the assignments are the nearest centers
        assert np.linalg.norm(centers[:, None] - found[None], axis=2).min(axis=1).max() < 1.0
        labels = np.array([int(v) for v in run["assignments"].split()])
        assert (labels == np.linalg.norm(x[:, None] - found[None], axis=2).argmin(axis=1)).all()


def test_kmeans_empty_cluster_restarts_at_the_farthest_line(world, tmp_path: Path) -> None:
    # Both initial centers equal: the second cluster is empty, and restarts at the line farthest from the first.
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [10.0, 10.0], [10.0, 11.0]])
    arguments = {"k": 2, "feature_size": 2, "tolerance": 0.0, "initial_centers": "0,0\n0,0\n"}
    value, out = call(world, tmp_path, "kmeans", arguments, {"input_data": csv(x)}, ["model_file", "assignments"])
    assert out["assignments"] == b"0\n0\n0\n1\n1\n"
    assert out["model_file"] == csv(np.array([[1 / 3, 1 / 3], [10.0, 10.5]]))
    assert value.startswith(b"Clustered 5 lines of data into 2 clusters")


# --------------------------------------------------------------------------- malformed inputs and arguments

LR = {"alg_alpha": 0.3, "alg_iters": 10, "feature_size": 2}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "training_data is empty"),
        (b"1,2,1\n1,2\n", "training_data, line 2: has 2 columns, expected 3"),
        (b"1,2,1\n1,SECRET,0\n", "training_data, line 2: column 2 is not a number"),
        (b"1,2,1\n1,2,0.5\n", "training_data, line 2: column 3 \\(the label\\) must be 0 or 1"),
        (b"1,2,1\n\n1,2,0\n", "training_data, line 2: empty line"),
        (b"1,2,1\n1,nan,0\n", "training_data, line 2: column 2 is not a number"),
    ],
)
def test_training_data_refused(world, tmp_path: Path, data: bytes, match: str) -> None:
    refused(
        world, tmp_path, "logistic_regression_train", LR, {"training_data": data}, ["model_file"], Status.INPUT_INVALID,
        match, "SECRET",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({**LR, "alg_iters": 0}, "alg_iters must be at least 1"),
        ({**LR, "alg_iters": 10**6}, "alg_iters must be at most 10000"),
        ({**LR, "feature_size": 5000}, "feature_size must be at most 4096"),
        ({**LR, "alg_alpha": -1.0}, "alg_alpha must be at least 0"),
        ({**LR, "solver": "newton"}, "solver must be one of: gd, lbfgs"),
        ({**LR, "l2": -0.1}, "l2 must be at least 0"),
        ({"alg_alpha": 0.3, "feature_size": 2}, "missing required argument alg_iters"),
    ],
)
def test_training_arguments_refused(world, tmp_path: Path, arguments: dict, match: str) -> None:
    refused(
        world, tmp_path, "logistic_regression_train", arguments, {"training_data": b"1,2,1\n"}, ["model_file"],
        Status.ARGUMENT_INVALID, match,
    )  # fmt: skip


def test_divergence_is_a_function_failure(world, tmp_path: Path) -> None:
    data = csv(np.column_stack([np.array([[1e305, 1e305], [-1e305, 1e305]]), [1, 0]]))
    refused(
        world, tmp_path, "logistic_regression_train", {**LR, "alg_alpha": 1e6}, {"training_data": data}, ["model_file"],
        Status.FUNCTION_FAILED, "diverged",
    )  # fmt: skip


GOOD_MODEL = b'{"alpha":0.3,"iters":10,"parameters":[0.5,1.0,-2.0]}'


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (b"", " is empty"),
        (b'{"alpha":0.3,"iters":10}', "line 1: the model needs alpha, iters and parameters"),
        (b'{"alpha":0.3,"iters":10,"parameters":[0.5]}', "needs an intercept and at least one weight"),
        (b'{"alpha":0.3,"iters":10,"parameters":[0.5,SECRET]}', "line 1: expected a finite number"),
        (b'{"alpha":0.3,"iters":10,"parameters":[0.5,01]}', "line 1: expected a finite number"),
        (b'{"alpha":0.3,"iters":10,"parameters":[0.5,1e999]}', "line 1: expected a finite number"),
        (b'{"alpha":0.3,\n"alpha":0.3,"iters":10,"parameters":[1,2]}', "line 2: unexpected or repeated key"),
        (b'{"alpha":0.3,"iters":10,"weights":[1,2]}', "unexpected or repeated key"),
        (b'{"alpha":0.3,"iters":1.5,"parameters":[1,2]}', "iters is not a count"),
        (b'{"version":2,"alpha":0.3,"iters":1,"parameters":[1,2]}', "unknown model version"),
        (GOOD_MODEL + b"x", "content after the model"),
        (GOOD_MODEL[:-1], "expected '}'"),
        (b"[1,2]", "expected '\\{'"),
    ],
)
def test_models_refused(world, tmp_path: Path, model: bytes, match: str) -> None:
    refused(
        world, tmp_path, "logistic_regression_predict", {}, {"model_file": model, "data_file": b"1,2\n"},
        ["result_file"], Status.INPUT_INVALID, "input model_file.*" + match, "SECRET",
    )  # fmt: skip


def test_model_accepts_whitespace_order_and_version(world, tmp_path: Path) -> None:
    model = b' {\n "version": 1, "parameters": [ 0.5 , 1.0, -2.0 ],\r\n "iters": 10, "alpha": 3e-1 }\n'
    _, out = call(
        world, tmp_path, "logistic_regression_predict", {}, {"model_file": model, "data_file": b"1,2\n0,0\n"},
        ["result_file"],
    )  # fmt: skip
    assert out["result_file"] == b"0.0759\n0.6225\n"


@pytest.mark.parametrize(
    ("data", "match"),
    [(b"1,2\n1,2,3\n", "data_file, line 2: has 3 columns, expected 2"), (b"1,SECRET\n", "line 1: column 2 is not")],
)
def test_prediction_data_refused(world, tmp_path: Path, data: bytes, match: str) -> None:
    refused(
        world, tmp_path, "logistic_regression_predict", {}, {"model_file": GOOD_MODEL, "data_file": data},
        ["result_file"], Status.INPUT_INVALID, match, "SECRET",
    )  # fmt: skip


PCA = {"n": 1, "feature_size": 2}


@pytest.mark.parametrize(
    ("arguments", "data", "status", "match"),
    [
        (PCA, b"1,2,0\n3,4\n", Status.INPUT_INVALID, "input_data, line 2: has 2 columns, expected 3"),
        (PCA, b"1,2,0\n3,x,0\n", Status.INPUT_INVALID, "input_data, line 2: column 2 is not a number"),
        (PCA, b"", Status.INPUT_INVALID, "input_data is empty"),
        ({"n": 3, "feature_size": 2}, b"1,2,0\n", Status.ARGUMENT_INVALID, "n must be at most feature_size"),
        ({"n": 1, "feature_size": 600}, b"1,2,0\n", Status.ARGUMENT_INVALID, "feature_size must be at most 512"),
        ({"n": 0, "feature_size": 2}, b"1,2,0\n", Status.ARGUMENT_INVALID, "n must be at least 1"),
        ({"n": 1}, b"1,2,0\n", Status.ARGUMENT_INVALID, "missing required argument feature_size"),
    ],
)
def test_pca_refused(world, tmp_path: Path, arguments: dict, data: bytes, status: Status, match: str) -> None:
    inputs = {"input_data": data}
    refused(world, tmp_path, "principal_components_analysis", arguments, inputs, ["output_data"], status, match)


KM = {"k": 2, "feature_size": 2}


@pytest.mark.parametrize(
    ("arguments", "data", "status", "match"),
    [
        (KM, b"1,2\n3\n", Status.INPUT_INVALID, "input_data, line 2: has 1 columns, expected 2"),
        (KM, b"1,2\n3,SECRET\n", Status.INPUT_INVALID, "input_data, line 2: column 2 is not a number"),
        (KM, b"1,2\n", Status.INPUT_INVALID, "input_data holds 1 lines, fewer than k"),
        ({**KM, "k": 0}, b"1,2\n", Status.ARGUMENT_INVALID, "k must be at least 1"),
        ({**KM, "max_iterations": 10**5}, b"1,2\n", Status.ARGUMENT_INVALID, "max_iterations must be at most 10000"),
        ({**KM, "seed": -1}, b"1,2\n", Status.ARGUMENT_INVALID, "seed must be at least 0"),
        ({**KM, "tolerance": -1.0}, b"1,2\n", Status.ARGUMENT_INVALID, "tolerance must be at least 0"),
        ({**KM, "initial_centers": "1,2\n"}, b"1,2\n3,4\n", Status.ARGUMENT_INVALID, "initial_centers must hold k"),
        (
            {**KM, "initial_centers": "1,2\n3,SECRET\n"}, b"1,2\n3,4\n", Status.ARGUMENT_INVALID,
            "argument initial_centers, line 2: column 2 is not a number",
        ),
    ],
)  # fmt: skip
def test_kmeans_refused(world, tmp_path: Path, arguments: dict, data: bytes, status: Status, match: str) -> None:
    refused(
        world, tmp_path, "kmeans", arguments, {"input_data": data}, ["model_file", "assignments"], status, match,
        "SECRET",
    )  # fmt: skip


def test_functions_declared(world) -> None:
    declared = world[0].functions()
    train_decl = declared["logistic_regression_train"]
    assert [a.name for a in train_decl.arguments][:3] == ["alg_alpha", "alg_iters", "feature_size"]
    assert [s.name for s in train_decl.inputs] == ["training_data"]
    assert [s.name for s in declared["logistic_regression_predict"].inputs] == ["model_file", "data_file"]
    assert [s.name for s in declared["principal_components_analysis"].outputs] == ["output_data"]
    assert [s.name for s in declared["kmeans"].outputs] == ["model_file", "assignments"]
