"""A clinic trains a model owned by an analytics firm, then scores new patients with it; neither sees the other's part.

Two tasks, Teaclave's ``logistic_regression_train`` and
``logistic_regression_predict``:

1. The clinic uploads labelled records and allows one use: training a model
   that goes to the firm only (its usage policy). The enclave trains and
   encrypts the model to the firm.
2. The firm keeps the model as its own encrypted dataset on the node, the
   clinic uploads new records, and a predict task sends the scores to the
   clinic only. The firm never sees a record; the clinic never sees the model.

Run it: ``python examples/logistic_regression.py`` (a temporary folder, a
throwaway software platform).
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from pathlib import Path

import mesatee
from mesatee.node import UsagePolicy

FEATURES = 3
TRUE_WEIGHTS = (-0.5, 2.0, -1.5, 1.0)  # intercept, then one per feature: what the clinic's data hides


def records(count: int, seed: int) -> list[tuple[list[float], int]]:
    """Synthetic patients: features and a 0/1 outcome drawn from TRUE_WEIGHTS' logistic model."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        x = [round(rng.gauss(0, 1), 4) for _ in range(FEATURES)]
        z = TRUE_WEIGHTS[0] + sum(w * v for w, v in zip(TRUE_WEIGHTS[1:], x, strict=True))
        rows.append((x, int(rng.random() < 1 / (1 + math.exp(-z)))))
    return rows


def csv(rows: list[list[float]]) -> bytes:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mesatee-logistic-") as folder:
        os.environ["MESATEE_HOME"] = str(Path(folder) / "platform")  # a throwaway software platform
        with mesatee.Node(Path(folder) / "node", workers=1) as node:
            run(node)


def run(node: mesatee.Node) -> None:
    clinic_party, firm_party = mesatee.Party.generate(), mesatee.Party.generate()
    node.admit(clinic_party.identity, name="clinic")
    node.admit(firm_party.identity, name="firm")
    policy = mesatee.AttestationPolicy(
        mrenclave=node.enclave_identity.mrenclave,
        allow_software=True,  # the software platform has no hardware isolation: fine for a demo only
        trusted_roots=[mesatee.platform_root_certificate()],
    )
    clinic = mesatee.Client(node, clinic_party, policy)
    firm = mesatee.Client(node, firm_party, policy)
    clinic_id, firm_id = clinic_party.identity, firm_party.identity

    # 1. Training: the clinic's records in, the firm's model out.
    training = records(400, seed=1)
    training_set = clinic.encrypt_and_upload(csv([[*x, y] for x, y in training]))
    clinic.set_policy(
        training_set,
        UsagePolicy(
            allowed_functions=("logistic_regression_train",),
            allowed_output_recipients=frozenset({firm_id.party_id}),
            max_uses=1,
        ),
    )
    print(f"clinic uploads {len(training)} labelled records; its policy: train once, model to the firm only")
    train = firm.new_manifest(
        "logistic_regression_train",
        arguments={"alg_alpha": 0.5, "alg_iters": 500, "feature_size": FEATURES},
        inputs={"training_data": (clinic_id, training_set)},
        outputs={"model_file": [firm_id]},
    )
    task_id = firm.create_task(train)
    for client in (firm, clinic):
        client.approve(task_id)
    clinic.grant(task_id)
    firm.invoke(task_id)
    trained = firm.result(task_id, wait=60)
    model = trained.outputs["model_file"]
    weights = json.loads(model)["parameters"]
    print(
        f"firm: {trained.return_value.decode() if trained.return_value else ''} "
        f"Its model: {', '.join(f'{w:.2f}' for w in weights)} (true: {', '.join(map(str, TRUE_WEIGHTS))})"
    )

    # 2. Prediction: the firm's model (now its own encrypted dataset) and the clinic's new records.
    model_set = firm.encrypt_and_upload(model)
    fresh = records(200, seed=2)
    fresh_set = clinic.encrypt_and_upload(csv([x for x, _ in fresh]))
    print(f"firm uploads the model as its dataset; clinic uploads {len(fresh)} new records (no labels)")
    predict = clinic.new_manifest(
        "logistic_regression_predict",
        inputs={"model_file": (firm_id, model_set), "data_file": (clinic_id, fresh_set)},
        outputs={"result_file": [clinic_id]},
    )
    task_id = clinic.create_task(predict)
    for client in (clinic, firm):
        client.approve(task_id)
        client.grant(task_id)
    clinic.invoke(task_id)
    scored = clinic.result(task_id, wait=60)
    scores = [float(line) for line in scored.outputs["result_file"].decode().split()]
    correct = sum((score >= 0.5) == bool(label) for score, (_, label) in zip(scores, fresh, strict=True))
    print(
        f"clinic: {scored.return_value.decode() if scored.return_value else ''} "
        f"First scores: {', '.join(f'{s:.4f}' for s in scores[:5])}"
    )
    print(
        f"clinic checks them against the outcomes it learned later: {correct} of {len(fresh)} right "
        f"({100 * correct / len(fresh):.0f}%)"
    )
    print("the firm's result holds nothing for it:", firm.result(task_id).outputs == {})


if __name__ == "__main__":
    main()
