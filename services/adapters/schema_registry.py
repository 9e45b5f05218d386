"""Every topic's value schema in a schema registry (scripts/registry starts Apicurio Registry), through its
Confluent-compatible API (/apis/ccompat/v7): BACKWARD compatibility set on each subject, so the registry itself
refuses an incompatible change (409, RegistryRefused), then the schema registered.

The transport, the subject names (Confluent's TopicNameStrategy, `<physical topic>-value`), access (basic auth,
the CA) and the errors are services/bus/schema_registry.py's, what the codec writes Confluent-framed records with;
this adds what an operator does beside: compatibility levels, checks, registering every topic at once. The text
registered is the codec's (services/bus/codec.py registry_form), so the ids are the ones the codec writes with and
a reader that fetches the schema by id decodes with exactly the writer schema.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple, cast

from services.bus.catalogue import Catalogue
from services.bus.codec import SchemaCatalogue, registry_form
from services.bus.schema_registry import (avro_body, configured_registry, quote, RegistryRefused, SchemaRegistry,
                                          subject_for)
from services.bus.settings import ConfigError, Settings

BACKWARD = "BACKWARD"


class RegistryRequest(NamedTuple):
    method: str
    path: str                       # below the API's base URL
    body: dict | None = None


def set_compatibility_request(subject: str, level: str = BACKWARD) -> RegistryRequest:
    return RegistryRequest("PUT", f"/config/{quote(subject)}", {"compatibility": level})


def compatibility_request(subject: str) -> RegistryRequest:
    return RegistryRequest("GET", f"/config/{quote(subject)}")


def check_request(subject: str, schema_text: str) -> RegistryRequest:
    return RegistryRequest("POST", f"/compatibility/subjects/{quote(subject)}/versions/latest?verbose=true",
                           avro_body(schema_text))


class RegistryAdmin(SchemaRegistry):
    """The codec's registry client, with the subject settings and checks an operator needs."""

    def set_compatibility(self, subject: str, level: str = BACKWARD) -> None:
        self.call(*set_compatibility_request(subject, level))

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level; None when it has none (the registry's default applies)."""
        answer = self._unless_missing(compatibility_request(subject))
        return None if answer is None else answer.get("compatibilityLevel") or answer.get("compatibility")

    def check(self, subject: str, schema_text: str) -> tuple[bool, list[str]]:
        """Whether `schema_text` may follow the subject's latest version, with the registry's reasons if it
        gives any (Apicurio gives none); (True, []) for a subject with no version yet."""
        answer = self._unless_missing(check_request(subject, schema_text))
        if answer is None:
            return True, []
        return bool(answer.get("is_compatible")), [str(m) for m in answer.get("messages") or []]

    def _unless_missing(self, request: RegistryRequest) -> Any:
        try:
            return self.call(*request)
        except RegistryRefused as refused:
            if refused.status == 404:
                return None
            raise


def registry_admin(settings: Settings, catalogue: Catalogue, url: str = "") -> RegistryAdmin:
    """The registry the settings name (MLBUS_REGISTRY_CONFIG, MLBUS_REGISTRY_URL), `url` overriding theirs."""
    if url:
        settings = replace(settings, connection=replace(settings.connection, registry_url=url.rstrip("/")))
    registry = configured_registry(settings, catalogue, RegistryAdmin)
    if registry is None:
        raise ConfigError("no schema registry: set MLBUS_REGISTRY_URL, and MLBUS_REGISTRY_CONFIG for a secured one "
                          "(scripts/registry start prints its url= and registry_config=)")
    return cast(RegistryAdmin, registry)


def topic_schemas(catalogue: Catalogue, schemas: SchemaCatalogue) -> dict[str, str]:
    """Subject → the schema text to register, for every topic that has a schema (dead-letter topics carry raw
    bytes: none)."""
    return {subject_for(catalogue.physical(topic.name)): registry_form(schemas.schema(topic.schema).parsed)
            for topic in catalogue.primary() if topic.schema}


def register_all(registry: RegistryAdmin, catalogue: Catalogue, schemas: SchemaCatalogue) -> dict[str, int]:
    """Every topic's value schema registered under its subject, BACKWARD compatibility set on the subject first
    (so the registry refuses an incompatible change); subject → id. Idempotent: a schema already registered
    keeps its id."""
    ids = {}
    for subject, schema_text in topic_schemas(catalogue, schemas).items():
        registry.set_compatibility(subject, BACKWARD)
        ids[subject] = registry.register(subject, schema_text)
    return ids


def check_all(registry: RegistryAdmin, catalogue: Catalogue,
              schemas: SchemaCatalogue) -> dict[str, tuple[bool, list[str]]]:
    """Whether every topic's current schema may follow what its subject holds; subject → (compatible, reasons)."""
    return {subject: registry.check(subject, schema_text)
            for subject, schema_text in topic_schemas(catalogue, schemas).items()}
