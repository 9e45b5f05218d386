"""One real Kafka broker for the whole session (started through scripts/kafka), one namespace per test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from services.bus.acl_admin import apply_access
from services.bus.topics import TopicAdmin
from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT
from tests.support.databases import create_database, drop_database, start_postgres, stop_postgres
from tests.support import polling
from tests.support.people import Cli, prepared_bus
from tests.support.schema_registry import RegistryServer, start_registry, stop_registry

# Property tests draw the same examples on every run ("repeatable", the default: a landing run draws what the last
# local run drew, so a rare example cannot fail one and not the other); MLBUS_HYPOTHESIS=explore draws new ones
# each run, to look for more (scripts/test's runs of it are for a person watching, not for CI).
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("MLBUS_HYPOTHESIS", "repeatable"))

KAFKA_SCRIPT = PROJECT_ROOT / "scripts" / "kafka"
# scripts/test runs the suite in two pytest-xdist workers (gw0, gw1), each with its own broker, registry and
# database server on free ports. `mlbus up` gives its i-th service the metrics port base + i: a base per worker,
# so that two `mlbus up` at once never meet (a test that needs another base sets its own).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and "MLBUS_METRICS_BASE_PORT" not in os.environ:
    os.environ["MLBUS_METRICS_BASE_PORT"] = str(9400 + 100 * int(_WORKER[2:]))


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    clients_dir: str        # <principal>.properties: admin's from scripts/kafka, the services' from acl apply

    def env(self) -> dict[str, str]:
        return {"MLBUS_BOOTSTRAP": self.bootstrap, "MLBUS_CREDENTIALS_DIR": self.clients_dir}


@pytest.fixture(scope="session")
def broker() -> Broker:
    """MLBUS_BOOTSTRAP (with MLBUS_CREDENTIALS_DIR) if set, else a fresh secured local broker on a free port,
    with every service principal made, stopped after the session."""
    if os.environ.get("MLBUS_BOOTSTRAP"):
        yield Broker(os.environ["MLBUS_BOOTSTRAP"], os.environ.get("MLBUS_CREDENTIALS_DIR", ""))
        return
    state = PROJECT_ROOT / "var" / f"test-kafka-{os.getpid()}"
    result = subprocess.run([sys.executable, str(KAFKA_SCRIPT), "start", "--dir", str(state), "--fresh"],
                            stdout=subprocess.PIPE, text=True)
    assert result.returncode == 0, f"local broker did not start:\n{result.stdout}"
    started = Broker(result.stdout.strip().splitlines()[-1].removeprefix("bootstrap="), str(state / "clients"))
    apply_access(Bus.from_env(started.env()))       # the principals, once for the session
    yield started
    subprocess.run([sys.executable, str(KAFKA_SCRIPT), "stop", "--dir", str(state)], stdout=subprocess.DEVNULL)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def bootstrap(broker) -> str:
    return broker.bootstrap


@pytest.fixture
def bus_env(broker, tmp_path) -> dict[str, str]:
    """Environment for a test's processes: its own topic namespace and var dir on the session broker. Each
    process connects as its own principal (services by their name, the CLI as admin)."""
    return {**os.environ, **broker.env(), "MLBUS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.",
            "MLBUS_VAR": str(tmp_path / "var"), "MLBUS_LOG_FORMAT": "json", "PYTHONPATH": str(PROJECT_ROOT)}


@pytest.fixture
def bus(bus_env, request) -> Bus:
    """A Bus acting as the broker's admin, whose topics and ACLs all exist, isolated by its namespace; audit.log
    made with the test's @pytest.mark.audit_shards(n) partitions if it has one (1: a v1, single-chain log)."""
    if (marker := request.node.get_closest_marker("audit_shards")) is not None:
        admin = Bus.from_env(bus_env, principal="admin")
        TopicAdmin(admin).create_with_partitions("audit.log", marker.args[0])
    return prepared_bus(bus_env)


@pytest.fixture
def cli(bus_env) -> Cli:
    return Cli(bus_env)


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory) -> RegistryServer:
    """A real schema registry (Apicurio Registry through scripts/registry: HTTPS, basic auth) on free ports, for
    the session, stopped after it; .url is its Confluent-compatible API, .env() what mlbus reads to reach it."""
    state = tmp_path_factory.mktemp("schema-registry")
    yield start_registry(state)
    stop_registry(state)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """MLBUS_TEST_POSTGRES_URL if set (a role that may create databases), else a fresh local server started
    through scripts/postgres for the session — only when a test asks for PostgreSQL."""
    if os.environ.get("MLBUS_TEST_POSTGRES_URL"):
        yield os.environ["MLBUS_TEST_POSTGRES_URL"]
        return
    state = PROJECT_ROOT / "var" / f"test-postgres-{os.getpid()}"
    yield start_postgres(state)
    stop_postgres(state)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The registry's database for this test, once on SQLite and once on its own fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    server, name = request.getfixturevalue("postgres_server"), f"t{uuid.uuid4().hex[:12]}"
    yield create_database(server, name)
    drop_database(server, name)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in Path(item.fspath).parts or "e2e" in Path(item.fspath).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def test_budget(request):
    """Every wait_until of a test ends, naming what it waited for, before pytest-timeout would stop the test
    with no named cause: waits whose deadlines add up past the test's timeout are cut to what is left."""
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker and marker.args else float(request.config.getini("timeout") or 0)
    polling.set_test_deadline(seconds - 20 if seconds > 60 else None)
    yield
    polling.set_test_deadline(None)
