"""A real schema registry for tests: Apicurio Registry started through scripts/registry (which fetches it from
Maven Central the first time), in a state directory of the test session's, stopped after it."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.bus.settings import PROJECT_ROOT

REGISTRY_SCRIPT = PROJECT_ROOT / "scripts" / "registry"
FETCH_AND_START_S = 900        # a first run downloads ~160 MB; a start alone takes 15-60 s on 2 busy cores


@dataclass(frozen=True)
class RegistryServer:
    url: str                    # the Confluent-compatible API: https://127.0.0.1:PORT/apis/ccompat/v7
    config_file: str            # admin's url, username, password and CA (scripts/registry's clients/admin.properties)
    reader_file: str            # the read-only user's (sr-readonly)
    writer_file: str            # the services' and the exporter's (sr-developer: no global rules)
    ca_file: str
    state: Path

    def env(self) -> dict[str, str]:
        """What mlbus's CLI reads to reach the registry as its admin (`mlbus schemas register`)."""
        return {"MLBUS_REGISTRY_URL": self.url, "MLBUS_REGISTRY_CONFIG": self.config_file}

    def writer_env(self) -> dict[str, str]:
        """What the services and the exporter read to reach the registry as its writer (sr-developer)."""
        return {"MLBUS_REGISTRY_URL": self.url, "MLBUS_REGISTRY_CONFIG": self.writer_file}


def start_registry(state: Path) -> RegistryServer:
    result = subprocess.run([sys.executable, str(REGISTRY_SCRIPT), "start", "--dir", str(state), "--fresh"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=FETCH_AND_START_S)
    assert result.returncode == 0, f"the schema registry did not start:\n{result.stdout[-4000:]}"
    printed = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line and "[" not in line)
    return RegistryServer(url=printed["url"], config_file=printed["registry_config"],
                          reader_file=str(state / "clients" / "reader.properties"),
                          writer_file=str(state / "clients" / "writer.properties"), ca_file=printed["ca"], state=state)


def stop_registry(state: Path) -> None:
    subprocess.run([sys.executable, str(REGISTRY_SCRIPT), "stop", "--dir", str(state)], stdout=subprocess.DEVNULL,
                   timeout=60)
