"""Services under test run as real processes, as in production."""
from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.service_keys import SIGNING_SERVICES, await_enrolments, keys_dir
from services.bus.settings import PROJECT_ROOT
from services.bus.supervision import SERVICES


def start(module: str, env: dict, log: Path | None = None, **extra_env: str) -> subprocess.Popen:
    """The service's process; a service that signs its acts makes its key at its first start, and the broker
    admin enrols it here, as `mlbus up` does."""
    output = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", module], cwd=PROJECT_ROOT, env={**env, **extra_env},
                               stdout=output, stderr=subprocess.STDOUT)
    enrol_if_signing(module, {**env, **extra_env}, alive=lambda: process.poll() is None)
    return process


def enrol_if_signing(module: str, env: dict, alive=lambda: True) -> None:
    name = {module: name for name, module in SERVICES.items()}.get(module)
    if name in SIGNING_SERVICES:
        admin = Bus.from_env(env, principal=ADMIN)
        await_enrolments(admin, [name], directory=keys_dir(admin.settings), alive=alive)


def stop(process: subprocess.Popen, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


@contextmanager
def running(module: str, env: dict, log: Path | None = None, **extra_env: str) -> Iterator[subprocess.Popen]:
    process = start(module, env, log, **extra_env)
    try:
        yield process
    finally:
        stop(process)


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on now (for a service or a test server to take), never the same twice in a
    session, and below the kernel's ephemeral range, so no client's outgoing connection takes it before the
    service binds it (scripts/kafka picks the broker's ports the same way)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    while True:
        port = random.randrange(max(1024, low - 16_000), low)
        if port in _GIVEN:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
