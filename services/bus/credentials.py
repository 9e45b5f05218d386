"""Broker credentials: one librdkafka properties file per principal in Settings.connection.kafka_clients_dir
(`<principal>.properties`: security.protocol, sasl.*, ssl.ca.location), written by scripts/kafka (admin) and
`mlbus acl apply` (every other principal). A directory without admin.properties means an unsecured broker, or
a real cluster configured through MLBUS_KAFKA_* settings: no credentials are added then."""
from __future__ import annotations

import os
import ssl
from pathlib import Path

from .settings import ConfigError, Secret, Settings

ADMIN = "admin"


def read_properties(path: Path) -> dict[str, str]:
    """A Java/librdkafka properties file: key=value lines, # comments; passwords come back as Secret."""
    properties: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            properties[key] = Secret(value) if "password" in key else value
    return properties


def write_properties(path: Path, properties: dict[str, str]) -> None:
    """Write credentials only their owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in properties.items())
    os.chmod(path, 0o600)


def secured(settings: Settings) -> bool:
    connection = settings.connection
    return (connection.kafka_clients_dir / f"{ADMIN}.properties").exists() or connection.identity_kafka is not None


def credentials_file(settings: Settings, principal: str | None = None) -> Path:
    return settings.connection.kafka_clients_dir / f"{principal or settings.connection.client_principal}.properties"


def client_credentials(settings: Settings) -> dict[str, str]:
    """The security properties of the process's principal, or {} when the broker is not secured this way."""
    connection = settings.connection
    if connection.identity_kafka is not None and connection.client_principal == connection.identity_principal:
        return {k: Secret(v) if "password" in k else v for k, v in connection.identity_kafka.items()}
    if not secured(settings):
        return {}
    path = credentials_file(settings)
    if not path.exists():
        raise ConfigError(f"no broker credentials for principal {settings.connection.client_principal!r} in "
                          f"{settings.connection.kafka_clients_dir}: run `mlbus acl apply` (as admin) to create them")
    properties = read_properties(path)
    properties.pop("bootstrap.servers", None)
    return properties


def aiokafka_credentials(settings: Settings) -> dict:
    """The same credentials in aiokafka's terms (faust's broker connections)."""
    properties = {**client_credentials(settings), **settings.connection.kafka_overrides}
    if properties.get("security.protocol", "PLAINTEXT").upper() != "SASL_SSL":
        return {}
    context = ssl.create_default_context(cafile=properties.get("ssl.ca.location"))
    return {"username": properties["sasl.username"], "password": str(properties["sasl.password"]),
            "mechanism": properties.get("sasl.mechanisms", "SCRAM-SHA-512"), "ssl_context": context}
