"""One real Kafka broker for the whole session (started through scripts/kafka), one namespace per test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT, Settings
from services.bus.topics import TopicAdmin, plan_topics

KAFKA_SCRIPT = PROJECT_ROOT / "scripts" / "kafka"


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> str:
    """MLBUS_BOOTSTRAP if set, else a fresh local broker on a free port, stopped after the session."""
    if os.environ.get("MLBUS_BOOTSTRAP"):
        yield os.environ["MLBUS_BOOTSTRAP"]
        return
    state = PROJECT_ROOT / "var" / f"test-kafka-{os.getpid()}"
    result = subprocess.run([sys.executable, str(KAFKA_SCRIPT), "start", "--dir", str(state), "--fresh"],
                            stdout=subprocess.PIPE, text=True)
    assert result.returncode == 0, f"local broker did not start:\n{result.stdout}"
    yield result.stdout.strip().splitlines()[-1].removeprefix("bootstrap=")
    subprocess.run([sys.executable, str(KAFKA_SCRIPT), "stop", "--dir", str(state)], stdout=subprocess.DEVNULL)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def bus_env(bootstrap, tmp_path) -> dict[str, str]:
    """Environment for a test's processes: its own topic namespace and var dir on the session broker."""
    return {**os.environ, "MLBUS_BOOTSTRAP": bootstrap, "MLBUS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.",
            "MLBUS_VAR": str(tmp_path / "var"), "MLBUS_LOG_FORMAT": "json", "PYTHONPATH": str(PROJECT_ROOT)}


@pytest.fixture
def bus(bus_env) -> Bus:
    """A Bus whose topics all exist, isolated from every other test by its namespace."""
    bus = Bus.from_settings(Settings.from_env(bus_env))
    admin = TopicAdmin(bus)
    admin.apply(plan_topics(bus.catalogue, {}))
    return bus


def mlbus_cli(env: dict[str, str], *args: str, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `mlbus` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


@pytest.fixture
def cli(bus_env):
    return lambda *args, **kw: mlbus_cli(bus_env, *args, **kw)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in Path(item.fspath).parts or "e2e" in Path(item.fspath).parts:
            item.add_marker(pytest.mark.integration)
