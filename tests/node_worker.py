"""A node process for the scheduler's multi-process tests: ``python node_worker.py PATH WORKERS DELAY``.

Opens the node in PATH with WORKERS enclave workers (each call slowed by DELAY
seconds, to be caught mid-run), runs until no task is staged or running, then
prints how many enclave calls it made. MESATEE_HOME names the platform.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mesatee.core.enclave import Enclave
from mesatee.node import Node, SchedulerConfig


class SlowEnclave:
    def __init__(self, enclave: Enclave, delay: float) -> None:
        self.enclave, self.delay = enclave, delay
        self.identity = enclave.identity

    def invoke(self, invocation: bytes) -> bytes:
        time.sleep(self.delay)
        return self.enclave.invoke(invocation)


def main() -> None:
    path, workers, delay = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    enclave = Enclave(state_file=path / "enclave.state")
    config = SchedulerConfig(workers=workers, lease=2.0, poll_interval=0.02)
    with Node(path, enclave=SlowEnclave(enclave, delay), scheduler=config) as node:  # type: ignore[arg-type]
        print("started", flush=True)
        conn = node.db.connection()
        while conn.execute("SELECT 1 FROM tasks WHERE status IN ('ready', 'running') LIMIT 1").fetchone():
            time.sleep(0.05)
        print("runs", node.scheduler.runs, flush=True)


if __name__ == "__main__":
    main()
