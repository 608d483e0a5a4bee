"""Three banks learn the customers they all share and their total balance, and nothing else of each other's books.

Teaclave's ``private_join_and_compute`` case: each bank uploads its customer
list (``id : amount`` lines) encrypted under its own key, approves the task,
and grants its key to the attested enclave for this task only. The enclave
joins the three lists and sends every bank the sum for the customers present
in all three. Run it: ``python examples/three_banks.py`` (everything lives in a
temporary folder, on a throwaway software platform).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mesatee

BOOKS = {
    "bank_a": "b : 2000\na : 100\nc : 30000\ne : 5000000\nd : 400000\n",
    "bank_b": "e : 3000\nx : 200\nc : 40000\ny : 10\na : 5000000\n",
    "bank_c": "e : 30000\nx : 200\nc : 400000\ny : 10\nd : 5000000\n",
}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mesatee-three-banks-") as folder:
        os.environ["MESATEE_HOME"] = str(Path(folder) / "platform")  # a throwaway software platform
        with mesatee.Node(Path(folder) / "node", workers=1) as node:
            run(node)


def run(node: mesatee.Node) -> None:
    # The operator admits the banks; each bank trusts only this enclave build on this platform's root.
    banks = {name: mesatee.Party.generate() for name in BOOKS}
    for name, bank in banks.items():
        node.admit(bank.identity, name=name)
    policy = mesatee.AttestationPolicy(
        mrenclave=node.enclave_identity.mrenclave,
        allow_software=True,  # the software platform has no hardware isolation: fine for a demo only
        trusted_roots=[mesatee.platform_root_certificate()],
    )
    clients = {name: mesatee.Client(node, bank, policy) for name, bank in banks.items()}
    print(f"node up; the banks trust enclave {policy.mrenclave.hex()[:16]}…")

    datasets = {}
    for name, client in clients.items():
        datasets[name] = client.encrypt_and_upload(BOOKS[name].encode())
        customers = len(BOOKS[name].splitlines())
        print(f"{name} uploads its {customers} customers, encrypted: dataset {datasets[name].hex()[:16]}…")

    names = list(BOOKS)
    creator = clients["bank_a"]
    manifest = creator.new_manifest(
        "private_join_and_compute",
        arguments={"num_user": len(names)},
        inputs={f"input_data{i}": (banks[name].identity, datasets[name]) for i, name in enumerate(names)},
        outputs={f"output_data{i}": [banks[name].identity] for i, name in enumerate(names)},
    )
    task_id = creator.create_task(manifest)
    print(f"bank_a proposes task {task_id.hex()}: private_join_and_compute over the three books")

    for name, client in clients.items():
        client.approve(task_id)  # each signs every term of the manifest the node holds
        client.grant(task_id)  # ... and seals its dataset key to the verified enclave, for this task only
        print(f"{name} approves and grants its key ({client.task(task_id).status})")

    creator.invoke(task_id)
    for i, (name, client) in enumerate(clients.items()):
        opened = client.result(task_id, wait=60)  # verifies the enclave's receipt before opening anything
        shared = opened.outputs[f"output_data{i}"].decode()
        print(f"{name} learns: {opened.return_value.decode() if opened.return_value else ''}")
        for line in shared.splitlines():
            print(f"    {line}")
    print("no bank saw another's book; the node saw only ciphertext")


if __name__ == "__main__":
    main()
