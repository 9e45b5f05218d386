"""Services under test run as real processes, as in production."""
from __future__ import annotations

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


def free_port() -> int:
    """A TCP port nothing listens on now (for a service or a test server to take)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
