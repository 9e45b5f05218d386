"""compose/docker-compose.yml: every mlbus service is in it with a health check, on the secured broker, and
Docker's own tooling accepts the file. Validation needs the compose tool only, not a Docker engine: `docker
compose config` where the plugin is installed, else Debian's `docker-compose` (scripts/test installs it where
the docker CLI is present); skipped, with the reason, where neither is."""
import shutil
import subprocess

import pytest
import yaml

from services.bus.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "compose" / "docker-compose.yml"
SERVICES = ("validator", "trainer", "registry", "deployer", "scorer", "drift-watcher", "auditor", "notifier",
            "console", "witness")


def compose_tool() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_every_service_runs_on_the_secured_broker_with_a_health_check():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in (*SERVICES, "kafka", "postgres", "prometheus"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    for name in SERVICES:
        environment = services[name]["environment"]
        assert environment["MLBUS_BOOTSTRAP"] == "kafka:9092" and environment["MLBUS_CREDENTIALS_DIR"], name
        assert services[name]["depends_on"]["access"]["condition"] == "service_completed_successfully", name
    assert "SASL_SSL" in (PROJECT_ROOT / "compose" / "kafka" / "security.properties").read_text()   # the broker's
    assert "postgresql+psycopg://" in " ".join(services["registry"]["entrypoint"])


def test_each_service_mounts_only_its_own_secrets_and_never_the_admins_state():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in SERVICES:
        volumes = [v.split(":")[0] for v in services[name]["volumes"]]
        assert "state" not in volumes, f"{name} mounts the admin's state volume (every principal's credentials)"
        assert [v for v in volumes if v.endswith("-secrets")] == [f"{name}-secrets"], name
        assert [v for v in volumes if v.endswith("-var")] == [f"{name}-var"], name
        assert f"{name}-secrets:/secrets:ro" in services[name]["volumes"], f"{name}'s secrets are not read-only"
    assert "anchor:/anchor" in services["auditor"]["volumes"] and "anchor:/anchor:ro" in services["cli"]["volumes"]


def test_docker_compose_accepts_the_file():
    tool = compose_tool()
    if tool is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    checked = subprocess.run([*tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
