"""The witness in tests: its own process as `mlbus up` runs it (principal witness, its state in MLBUS_VAR/witness),
its key declared by the admin; and a wait for its co-signature of the newest head before `audit verify`."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Iterator

import pytest

from services.adapters import declare_witness_key, newest_cosigned
from tests.support.polling import wait_until
from tests.support.processes import running


@contextmanager
def witnessing(bus, bus_env: dict, log: Path) -> Iterator[Popen]:
    with running("services.witness", bus_env, log) as process:
        wait_until(lambda: process.poll() is not None or declare_witness_key(bus, bus.settings.audit.witness_dir),
                   timeout=60, message="the witness's key, to declare")
        assert process.poll() is None, log.read_text()
        yield process


@pytest.fixture
def witness(bus, bus_env, tmp_path) -> Iterator[Popen]:
    """The witness running for the whole test (import this fixture into a test module to use it)."""
    with witnessing(bus, bus_env, tmp_path / "witness.log") as process:
        yield process


def cosigned(bus, timeout: float = 120) -> None:
    """Wait until the witness has co-signed the newest signed head."""
    wait_until(lambda: newest_cosigned(bus), timeout=timeout, interval=0.5,
               message="the witness to co-sign the newest signed head")
