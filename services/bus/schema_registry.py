"""A schema registry's Confluent-compatible REST API (Apicurio Registry's /apis/ccompat/v7; scripts/registry starts
one), as the codec needs it: the id a writer schema has under its topic's subject, and the schema an id names.

Subjects follow Confluent's TopicNameStrategy, `<physical topic>-value`, which Kafka Connect's and ksqlDB's
converters look up by default. A registry that does not answer is an infrastructure failure (RegistryUnavailable:
the service stops loudly and restarts); one that refuses a schema (an incompatible change) is RegistryRefused.

Access: the URL (MLBUS_REGISTRY_URL), and for a secured registry the properties file scripts/registry writes
(MLBUS_REGISTRY_CONFIG: url, username, password, ca): HTTP basic auth, the CA to trust.
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .catalogue import Catalogue
from .errors import InfrastructureError
from .settings import ConfigError, Settings

TIMEOUT_S = 10.0
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_ANSWER_BYTES = 4 << 20          # a schema registry's answer: a schema, or a list of subjects


class RegistryError(RuntimeError):
    """The schema registry could not be used."""


class RegistryUnavailable(RegistryError, InfrastructureError):
    """The registry did not answer, or answered with a server error: an infrastructure failure, never the fault
    of the record being read (the service stops loudly; nothing is dead-lettered for it)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status            # the HTTP status of a server error; None: no answer at all


class RegistryRefused(RegistryError):
    """The registry refused a request, with its own message: an incompatible schema (409), an invalid one (422),
    wrong credentials or role (401, 403), no such subject or id (404)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"schema registry refused ({status}): {message}")
        self.status = status
        self.message = message


class SchemaRegistry:
    def __init__(self, url: str, catalogue: Catalogue, ca_file: str | None = None, timeout_s: float = TIMEOUT_S,
                 username: str = "", password: str = ""):
        self.url = url.rstrip("/")
        self.catalogue = catalogue
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._authorization = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
                               if username else "")

    @classmethod
    def from_access_file(cls, path: Path, catalogue: Catalogue, url: str = "", **options: Any) -> "SchemaRegistry":
        """A registry as scripts/registry's DIR/clients/<user>.properties describes it; `url` overrides its own."""
        try:
            values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        except OSError as error:
            raise ConfigError(f"schema registry access file (MLBUS_REGISTRY_CONFIG) {path}: {error}") from None
        return cls(url or values.get("url", ""), catalogue, ca_file=values.get("ca") or None,
                   username=values.get("username", ""), password=values.get("password", ""), **options)

    def subject_of(self, record: str) -> str:
        """The subject a record type's schemas are registered under: its topic's, as Connect looks it up."""
        return subject_for(self.catalogue.physical(self.catalogue.for_schema(record).name))

    def id_for(self, record: str, schema_text: str) -> int:
        return self.register(self.subject_of(record), schema_text)

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) a schema under `subject`; its id."""
        answer = self.call("POST", f"/subjects/{quote(subject)}/versions", avro_body(schema_text))
        return int(answer["id"])

    def schema_text(self, schema_id: int) -> str | None:
        """The schema under an id; None when the registry has none. A server error for this id while the registry
        answers otherwise is RegistryRefused (the record that names the id is at fault, not the registry: were
        it RegistryUnavailable, one record would stop its service at every start)."""
        try:
            answer = self.call("GET", f"/schemas/ids/{int(schema_id)}")
        except RegistryRefused as refused:
            if refused.status == 404:
                return None
            if refused.status in (401, 403):        # our credentials, not the record: stop loudly
                raise RegistryUnavailable(str(refused), status=refused.status) from None
            raise
        except RegistryUnavailable as unavailable:
            if unavailable.status is None or not self.answers():
                raise
            raise RegistryRefused(unavailable.status, f"a server error for schema id {schema_id} alone "
                                                      f"(the registry answers otherwise): {unavailable}") from None
        schema = answer.get("schema") if isinstance(answer, dict) else None
        return schema if isinstance(schema, str) else None

    def answers(self) -> bool:
        """Whether the registry answers a request that names no schema (the types it knows)."""
        try:
            self.call("GET", "/schemas/types")
        except RegistryError:
            return False
        return True

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if self._authorization:
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context) as response:
                return json.loads(response.read(MAX_ANSWER_BYTES) or b"null")
        except urllib.error.HTTPError as error:
            message = error.read(4096).decode("utf-8", "replace")
            if error.code >= 500:
                raise RegistryUnavailable(f"schema registry at {self.url}: {error.code} {message[:500]}",
                                          status=error.code) from None
            raise RegistryRefused(error.code, _message_of(message)) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RegistryUnavailable(f"schema registry at {self.url} did not answer: {error}") from None


def configured_registry(settings: Settings, catalogue: Catalogue,
                        kind: type[SchemaRegistry] = SchemaRegistry) -> SchemaRegistry | None:
    """The registry the settings name (MLBUS_REGISTRY_CONFIG and/or MLBUS_REGISTRY_URL); None if they name none."""
    url, access_file = settings.connection.registry_url, settings.services.registry_config
    if access_file:
        return kind.from_access_file(Path(access_file), catalogue, url)
    return kind(url, catalogue) if url else None


def subject_for(physical_topic: str) -> str:
    """Confluent's TopicNameStrategy for record values."""
    return f"{physical_topic}-value"


def avro_body(schema_text: str) -> dict:
    """The request body for an Avro schema. Apicurio 3.3 tells a schema's type from its text, and its Avro test
    strips every `: "{}"` first (a regular expression), so a field defaulting to the string "{}" (ModelLifecycle's
    evidence_json, Alert's, ...) leaves unparsable JSON: 422 "Failed to discover artifact type from content", even
    with schemaType AVRO. The same JSON with that brace escaped (\\u007b; a `{` right after a quote is always
    inside a string) is the same schema and passes."""
    return {"schema": schema_text.replace('"{}"', '"\\u007b}"'), "schemaType": "AVRO"}


def quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _message_of(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return text[:500]
    return str(answer.get("message", text))[:500] if isinstance(answer, dict) else text[:500]
