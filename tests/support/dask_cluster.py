"""A real dask.distributed cluster of processes for the tests and the bench: `dask scheduler` and `dask worker`
processes from the virtualenv, on 127.0.0.1 ports nothing else holds, one thread each (no nanny, so a killed
worker stays dead), stopped whatever happens."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from services.bus.settings import PROJECT_ROOT

from .processes import free_port

DASK = Path(sys.executable).parent / "dask"
READY_S = 60.0          # for the scheduler and the workers to come up, on a busy machine


@dataclass
class DaskProcesses:
    address: str
    client: object                                  # the test's own distributed.Client (to watch and to wait)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)     # worker address → its process

    def kill(self, address: str) -> None:
        """SIGKILL a worker: no goodbye to the scheduler, its tasks in flight lost."""
        self.workers[address].send_signal(signal.SIGKILL)
        self.workers[address].wait(30)


def _process(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}       # the workers unpickle the trainer's functions
    with open(log, "ab") as output:
        return subprocess.Popen([str(DASK), *args], cwd=PROJECT_ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT)


def _stopped(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)


@contextmanager
def dask_cluster(logs: Path, workers: int = 2) -> Iterator[DaskProcesses]:
    """A scheduler and `workers` single-thread workers, up and registered (dask's own deadline waits)."""
    from distributed import Client
    logs.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        scheduler = _process(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                              "--no-dashboard"], logs / "scheduler.log")
        stack.callback(_stopped, scheduler)
        started = {}
        for i in range(workers):
            worker_address = f"tcp://127.0.0.1:{free_port()}"
            process = _process(["worker", address, "--host", "127.0.0.1", "--worker-port",
                                worker_address.rsplit(":", 1)[1], "--nthreads", "1", "--no-nanny", "--name", f"w{i}",
                                "--no-dashboard", "--memory-limit", "0"], logs / f"worker-{i}.log")
            stack.callback(_stopped, process)
            started[worker_address] = process
        client = Client(address, timeout=READY_S, set_as_default=False)
        stack.callback(client.close)
        client.wait_for_workers(workers, timeout=READY_S)
        yield DaskProcesses(address, client, started)
