"""A schema registry's Confluent-compatible REST API (Apicurio Registry's /apis/ccompat/v7; scripts/registry starts
one), as the codec needs it: the id a writer schema has under its topic's subject, and the schema an id names.

Subjects follow Confluent's TopicNameStrategy, `<physical topic>-value`, which Kafka Connect's and ksqlDB's
converters look up by default. A registry that does not answer is an infrastructure failure (RegistryUnavailable:
the service stops loudly and restarts); one that refuses a schema (an incompatible change) is RegistryRefused.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .catalogue import Catalogue

TIMEOUT_S = 10.0
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_ANSWER_BYTES = 4 << 20          # a schema registry's answer: a schema, or a list of subjects


class RegistryUnavailable(RuntimeError):
    """The registry did not answer, or answered with a server error."""


class RegistryRefused(RuntimeError):
    """The registry refused a request: an incompatible schema (409), an invalid one (422), …"""

    def __init__(self, status: int, message: str):
        super().__init__(f"schema registry refused ({status}): {message}")
        self.status = status


class SchemaRegistry:
    def __init__(self, url: str, catalogue: Catalogue, ca_file: str | None = None, timeout_s: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.catalogue = catalogue
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def subject_of(self, record: str) -> str:
        """The subject a record type's schemas are registered under: its topic's, as Connect looks it up."""
        return self.catalogue.physical(self.catalogue.for_schema(record).name) + "-value"

    def id_for(self, record: str, schema_text: str) -> int:
        return self.register(self.subject_of(record), schema_text)

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) a schema under `subject`; its id."""
        answer = self.call("POST", f"/subjects/{quote(subject)}/versions",
                           {"schema": schema_text, "schemaType": "AVRO"})
        return int(answer["id"])

    def schema_text(self, schema_id: int) -> str | None:
        try:
            answer = self.call("GET", f"/schemas/ids/{int(schema_id)}")
        except RegistryRefused as refused:
            if refused.status == 404:
                return None
            raise
        schema = answer.get("schema") if isinstance(answer, dict) else None
        return schema if isinstance(schema, str) else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context) as response:
                return json.loads(response.read(MAX_ANSWER_BYTES) or b"null")
        except urllib.error.HTTPError as error:
            message = error.read(4096).decode("utf-8", "replace")
            if error.code >= 500:
                raise RegistryUnavailable(f"schema registry at {self.url}: {error.code} {message}") from None
            raise RegistryRefused(error.code, _message_of(message)) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RegistryUnavailable(f"schema registry at {self.url} did not answer: {error}") from None


def quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _message_of(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return text[:500]
    return str(answer.get("message", text))[:500] if isinstance(answer, dict) else text[:500]
