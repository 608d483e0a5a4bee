"""The learning built-ins' training, timed inside the trusted code (tests/native/probe.cpp, "learning_*").

Each figure times the numeric core alone on float64 rows already in memory (no
text parsing, no task protocol), beside what a user would otherwise run on the
same rows, in the same run, alternating sample by sample:

- logistic regression: Teaclave's batch gradient descent (every parameter from
  0.5, intercept first), beside the same loop in vectorized numpy,
  ``b -= a * X1.T @ (sigmoid(X1 @ b) - y) / m`` (float64; numpy's BLAS with its
  default threads, as a user runs it; also shown on one BLAS thread);
- PCA: covariance, eigenvectors and the projection on the first components,
  beside ``np.linalg.svd`` of the centered matrix (full_matrices=False) and the
  same projection;
- k-means: Lloyd from the same initial centers to convergence (or the same
  max_iter), beside scikit-learn's ``KMeans(n_init=1, algorithm="lloyd")``.

The results are checked against the baselines before timing.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from native.probe import Probe, build_probe


def _threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: thread counts unknown"
    return ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())


def _one_blas_thread(fn: Callable[[], object]) -> Callable[[], object]:
    from threadpoolctl import threadpool_limits

    def limited() -> object:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn()

    return limited


def _interleave(native: Callable[[], dict], baselines: dict[str, Callable[[], object]], repeats: int):
    """Median ns of the native core (its own clock) and of each baseline (perf_counter), taking turns."""
    samples: dict[str, list[float]] = {"mesatee": [], **{name: [] for name in baselines}}
    native()  # warm-up
    for fn in baselines.values():
        fn()
    for _ in range(repeats):
        samples["mesatee"].append(float(native()["ns"]))
        for name, fn in baselines.items():
            t0 = time.perf_counter_ns()
            fn()
            samples[name].append(float(time.perf_counter_ns() - t0))
    return {name: statistics.median(s) for name, s in samples.items()}, samples


def _call(probe: Probe, what: str, x: np.ndarray, extra: np.ndarray, iterations: int, **more: int):
    data, extra_bytes, cols = np.ascontiguousarray(x).tobytes(), np.ascontiguousarray(extra).tobytes(), x.shape[1]

    def call() -> dict:
        return probe("bench", what=what, iterations=iterations, data=data, extra=extra_bytes, cols=cols, **more)

    return call


def _logistic(probe: Probe, config: harness.Config, repeats: int, report: harness.Report) -> None:
    m, d, iters = config.pick(200_000, 100_000), 30, config.pick(100, 3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, d))
    y = (rng.random(m) < 1 / (1 + np.exp(-(x @ rng.standard_normal(d))))).astype(float)
    x1 = np.column_stack([np.ones(m), x])

    def numpy_gd() -> np.ndarray:
        b = np.full(d + 1, 0.5)
        for _ in range(iters):
            b -= 0.1 * (x1.T @ (1 / (1 + np.exp(-(x1 @ b))) - y)) / m
        return b

    native = _call(probe, "learning_logistic_gd", x, y, iters)
    ours = np.frombuffer(native()["result"])
    if not np.allclose(ours, numpy_gd(), rtol=0, atol=1e-9):
        raise RuntimeError("logistic gradient descent disagrees with numpy's")
    baselines = {"numpy": numpy_gd}
    with contextlib.suppress(ImportError):  # threadpoolctl: optional
        baselines["numpy, 1 BLAS thread"] = _one_blas_thread(numpy_gd)
    medians, samples = _interleave(native, baselines, repeats)
    size = f"{m // 1000}k x {d}, {iters} iterations"
    for name in baselines:
        report.figures.append(
            harness.Figure(
                id="learning.logistic_gd" + ("" if name == "numpy" else ".numpy_1thread"),
                name=f"logistic GD {size} (probe, training only)",
                unit="iterations/s",
                value=iters * 1e9 / medians["mesatee"],
                baseline_name=f"{name} b -= a*X.T@(sigmoid(X@b)-y)/m",
                baseline_value=iters * 1e9 / medians[name],
                goal=harness.Goal(ratio_at_least=2.0) if name == "numpy" else None,
                samples={"mesatee": samples["mesatee"], name: samples[name]},
            )
        )


def _pca(probe: Probe, config: harness.Config, repeats: int, report: harness.Report) -> None:
    m, d, n = config.pick(100_000, 4_000), 50, 5
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, d)) @ rng.standard_normal((d, d))

    def numpy_pca() -> np.ndarray:
        xc = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        return xc @ vt[:n].T

    native = _call(probe, "learning_pca", x, np.zeros(0), 1, components=n)
    ours = np.frombuffer(native()["result"]).reshape(m, n)
    if not np.allclose(np.abs(ours), np.abs(numpy_pca()), rtol=0, atol=1e-6):
        raise RuntimeError("PCA disagrees with numpy's SVD")
    medians, samples = _interleave(native, {"numpy": numpy_pca}, repeats)
    report.figures.append(
        harness.Figure(
            id="learning.pca",
            name=f"PCA {m // 1000}k x {d} -> {n} (probe, fit + transform)",
            unit="M rows/s",
            value=m / 1e6 * 1e9 / medians["mesatee"],
            baseline_name="np.linalg.svd of the centered rows + projection",
            baseline_value=m / 1e6 * 1e9 / medians["numpy"],
            samples=samples,
        )
    )


def _kmeans(probe: Probe, config: harness.Config, repeats: int, report: harness.Report) -> None:
    from sklearn.cluster import KMeans

    m, d, k, max_iter = config.pick(100_000, 4_000), 20, 8, 50
    rng = np.random.default_rng(2)
    x = rng.uniform(-6, 6, (k, d))[rng.integers(0, k, m)] + rng.standard_normal((m, d)) * 2.5
    start = x[rng.choice(m, k, replace=False)]

    def sklearn_fit() -> KMeans:
        return KMeans(n_clusters=k, init=start, n_init=1, algorithm="lloyd", max_iter=max_iter, tol=0.0).fit(x)

    native = _call(probe, "learning_kmeans", x, start, max_iter)
    reply, fitted = native(), sklearn_fit()
    if not np.allclose(np.frombuffer(reply["result"]).reshape(k, d), fitted.cluster_centers_, rtol=0, atol=1e-6):
        raise RuntimeError("k-means disagrees with scikit-learn's")
    medians, samples = _interleave(native, {"scikit-learn": sklearn_fit}, repeats)
    report.figures.append(
        harness.Figure(
            id="learning.kmeans",
            name=f"k-means {m // 1000}k x {d}, k={k} (probe, Lloyd from given centers)",
            unit="fits/s",
            value=1e9 / medians["mesatee"],
            baseline_name="scikit-learn KMeans lloyd, n_init=1",
            baseline_value=1e9 / medians["scikit-learn"],
            samples=samples,
        )
    )
    report.notes.append(
        f"learning.kmeans: both from the same {k} centers, tolerance 0, max_iter {max_iter}: "
        f"mesatee ran {reply['iterations']} Lloyd iterations, scikit-learn {fitted.n_iter_}"
    )


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    probe = build_probe(Path(__file__).resolve().parents[1] / "build" / "probe")
    repeats = min(config.repeats, 3 if config.quick else 5)
    _logistic(probe, config, repeats, report)
    _pca(probe, config, repeats, report)
    _kmeans(probe, config, repeats, report)
    report.notes.append(f"learning: mesatee's cores run on one thread; the baselines' thread pools: {_threads()}")
    return report


BENCHMARKS = {"learning": run}
