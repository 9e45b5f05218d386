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

from services.bus.settings import PROJECT_ROOT


def start(module: str, env: dict, log: Path | None = None, **extra_env: str) -> subprocess.Popen:
    output = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", module], cwd=PROJECT_ROOT, env={**env, **extra_env},
                            stdout=output, stderr=subprocess.STDOUT)


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
