"""The Bus: settings, topic catalogue and schema catalogue, loaded once and passed to whoever needs them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from .catalogue import Catalogue, load_catalogue
from .codec import SchemaCatalogue, load_schema_files
from .schema_registry import configured_registry
from .settings import ConfigError, Settings


@dataclass(frozen=True)
class Bus:
    settings: Settings
    catalogue: Catalogue
    schemas: SchemaCatalogue
    signer: Callable[[str, dict], dict] | None = None    # a service's own key: signs the acts it makes (service_keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bus":
        connection = settings.connection
        catalogue = load_catalogue(settings.storage.topics_file, connection.namespace, connection.replication)
        registry = configured_registry(settings, catalogue)
        confluent = catalogue.confluent_records(connection.wire)
        if confluent and registry is None:
            raise ConfigError(f"{len(confluent)} record types are to be written in Confluent's framing "
                              f"(MLBUS_WIRE={connection.wire}, topics.yaml `wire:`): set MLBUS_REGISTRY_URL to a "
                              "schema registry (scripts/registry start prints one)")
        schemas = SchemaCatalogue(load_schema_files(settings.storage.schemas_dir), registry=registry,
                                  confluent=confluent)
        for topic in catalogue.primary():
            schemas.schema(str(topic.schema))      # every topic's schema must exist: fail at start, not later
        return cls(settings, catalogue, schemas)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, principal: str = "") -> "Bus":
        """principal: whose credentials to use unless MLBUS_PRINCIPAL says otherwise (a service passes its name)."""
        settings = Settings.from_env(environ)
        return cls.from_settings(settings.as_principal(principal) if principal else settings)
