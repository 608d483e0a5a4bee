"""Four hospitals find the patients they all treated, without revealing their other patients to anyone.

``private_set_intersection`` (beyond Teaclave: any number of parties, unsorted
lists): each hospital uploads its patient ids encrypted, approves, grants its
key to the attested enclave, and receives the items common to all lists.
Run it: ``python examples/multiparty_psi.py`` (a temporary folder, a
throwaway software platform).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mesatee

PATIENTS = {
    "st_mary": ["p-1042", "p-2210", "p-3377", "p-4001", "p-5150", "p-6022"],
    "general": ["p-6022", "p-1042", "p-7788", "p-3377", "p-9001"],
    "city": ["p-3377", "p-1042", "p-2210", "p-6022", "p-8080"],
    "lakeside": ["p-1042", "p-6022", "p-3377", "p-1111"],
}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mesatee-psi-") as folder:
        os.environ["MESATEE_HOME"] = str(Path(folder) / "platform")  # a throwaway software platform
        with mesatee.Node(Path(folder) / "node", workers=1) as node:
            run(node)


def run(node: mesatee.Node) -> None:
    hospitals = {name: mesatee.Party.generate() for name in PATIENTS}
    for name, hospital in hospitals.items():
        node.admit(hospital.identity, name=name)
    policy = mesatee.AttestationPolicy(
        mrenclave=node.enclave_identity.mrenclave,
        allow_software=True,  # the software platform has no hardware isolation: fine for a demo only
        trusted_roots=[mesatee.platform_root_certificate()],
    )
    clients = {name: mesatee.Client(node, hospital, policy) for name, hospital in hospitals.items()}

    names = list(PATIENTS)
    datasets = {}
    for name in names:
        datasets[name] = clients[name].encrypt_and_upload("\n".join(PATIENTS[name]).encode() + b"\n")
        print(f"{name} uploads {len(PATIENTS[name])} patient ids, encrypted")

    creator = clients[names[0]]
    task_id = creator.create_task(
        creator.new_manifest(
            "private_set_intersection",
            arguments={"mode": "intersection"},
            inputs={f"input_data{i}": (hospitals[name].identity, datasets[name]) for i, name in enumerate(names)},
            outputs={f"output_data{i}": [hospitals[name].identity] for i, name in enumerate(names)},
        )
    )
    print(f"{names[0]} proposes task {task_id.hex()}: the patients common to all {len(names)} hospitals")
    for name in names:
        clients[name].approve(task_id)
        clients[name].grant(task_id)
    print("every hospital approved the terms and granted its key to the enclave, for this task only")

    creator.invoke(task_id)
    for i, name in enumerate(names):
        opened = clients[name].result(task_id, wait=60)
        common = opened.outputs[f"output_data{i}"].decode().split()
        print(f"{name}: {opened.return_value.decode() if opened.return_value else ''}: {', '.join(common)}")


if __name__ == "__main__":
    main()
