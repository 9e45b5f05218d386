"""A real schema registry (Apicurio Registry 3, started by scripts/registry): every topic's value schema registered
through its Confluent-compatible API with BACKWARD compatibility enforced there, and an incompatible change
refused by the registry itself. No Kafka broker is needed: registration reads topics.yaml and schemas/ only."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.adapters import check_all, register_all, RegistryAdmin, topic_schemas
from services.bus.catalogue import Catalogue, load_catalogue
from services.bus.codec import SchemaCatalogue, load_schema_files, parse_announced, registry_form, writer_schema
from services.bus.schema_registry import RegistryRefused, subject_for
from services.bus.settings import PROJECT_ROOT

pytestmark = pytest.mark.timeout(900)       # a first run fetches the registry (~160 MB) from Maven Central


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


CATALOGUE = load_catalogue(PROJECT_ROOT / "topics.yaml")
SCHEMAS = SchemaCatalogue(load_schema_files(PROJECT_ROOT / "schemas"))


def admin(server, catalogue=CATALOGUE) -> RegistryAdmin:
    return RegistryAdmin.from_access_file(Path(server.config_file), catalogue)


def test_the_script_reports_a_running_registry_that_refuses_strangers_and_readers_writing(schema_registry):
    status = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "registry"), "status", "--dir",
                             str(schema_registry.state)], stdout=subprocess.PIPE, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.splitlines()[-1] == f"url={schema_registry.url}"
    assert schema_registry.url.startswith("https://127.0.0.1:")
    stranger = urllib.request.Request(schema_registry.url + "/subjects")
    with pytest.raises(urllib.error.URLError):       # no CA given: the local CA's certificate is not trusted
        urllib.request.urlopen(stranger, timeout=10)
    anonymous = RegistryAdmin(schema_registry.url, CATALOGUE, ca_file=schema_registry.ca_file)
    with pytest.raises(RegistryRefused) as refused:
        anonymous.register(f"{namespace()}x-value", '"string"')
    assert refused.value.status == 401
    reader = RegistryAdmin.from_access_file(Path(schema_registry.reader_file), CATALOGUE)
    with pytest.raises(RegistryRefused) as refused:
        reader.register(f"{namespace()}x-value", '"string"')
    assert refused.value.status == 403


@dataclass(frozen=True)
class Registered:
    catalogue: Catalogue            # topics.yaml in the registration's own namespace
    ids: dict[str, int]             # subject → id, as `mlbus schemas register --json` printed them


@pytest.fixture(scope="module")
def registered(schema_registry, tmp_path_factory) -> Registered:
    """Every topic's schema registered once by the CLI, in a namespace of this module's."""
    prefix = namespace()
    env = {**os.environ, **schema_registry.env(), "MLBUS_NAMESPACE": prefix, "PYTHONPATH": str(PROJECT_ROOT),
           "MLBUS_VAR": str(tmp_path_factory.mktemp("var"))}
    cli = subprocess.run([sys.executable, "-m", "services.cli.main", "schemas", "register", "--json"],
                         cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=300)
    assert cli.returncode == 0, cli.stderr
    return Registered(load_catalogue(PROJECT_ROOT / "topics.yaml", prefix), json.loads(cli.stdout)["subjects"])


def test_every_topic_schema_is_registered_backward_and_again_with_the_same_ids(schema_registry, registered):
    catalogue, ids = registered.catalogue, registered.ids
    with_schemas = [t for t in catalogue.primary() if t.schema]
    assert sorted(ids) == sorted(subject_for(catalogue.physical(t.name)) for t in with_schemas)
    client = admin(schema_registry, catalogue)
    assert register_all(client, catalogue, SCHEMAS) == ids          # again: the same ids, nothing new
    assert all(compatible for compatible, _ in check_all(client, catalogue, SCHEMAS).values())
    for topic in with_schemas:
        subject = subject_for(catalogue.physical(topic.name))
        assert client.compatibility(subject) == "BACKWARD", subject
        # A reader that fetches the writer schema by id decodes with exactly the schema mlbus writes with.
        local = SCHEMAS.schema(str(topic.schema))
        fetched = writer_schema(parse_announced(str(client.schema_text(ids[subject])), local.parsed))
        assert fetched.fingerprint == local.fingerprint, subject
    assert client.schema_text(2**31 - 1) is None


def changed(parsed: dict, field: dict | None = None, retyped: str | None = None) -> str:
    """The registry text of `parsed` with a field added or a field's type changed to string."""
    fields = [({**f, "type": "string"} if f["name"] == retyped else f) for f in parsed["fields"]]
    return registry_form({**parsed, "fields": fields + ([field] if field else [])})


def test_the_registry_refuses_an_incompatible_change_and_takes_a_compatible_one(schema_registry, registered):
    catalogue, ids = registered.catalogue, registered.ids
    client = admin(schema_registry, catalogue)
    record = "mlbus.ModelLifecycle"           # its evidence_json defaults to "{}", which Apicurio's type test trips on
    subject = subject_for(catalogue.physical(catalogue.for_schema(record).name))
    parsed = SCHEMAS.schema(record).parsed
    assert client.id_for(record, topic_schemas(catalogue, SCHEMAS)[subject]) == ids[subject]
    incompatible = [changed(parsed, field={"name": "approver", "type": "string"}),     # no default: old can't read
                    changed(parsed, retyped="version")]                                 # int → string
    for schema_text in incompatible:
        assert client.check(subject, schema_text)[0] is False, schema_text     # Apicurio gives no reasons
        with pytest.raises(RegistryRefused) as refused:
            client.register(subject, schema_text)
        assert refused.value.status == 409 and "ncompatib" in refused.value.message
    with_default = changed(parsed, field={"name": "approver", "type": ["null", "string"], "default": None})
    assert client.check(subject, with_default) == (True, [])
    new_id = client.register(subject, with_default)
    assert new_id != ids[subject]
    assert json.loads(str(client.schema_text(new_id)))["fields"][-1]["name"] == "approver"
    assert client.register(subject, with_default) == new_id


def test_a_subject_a_writer_makes_before_any_register_refuses_an_incompatible_change(schema_registry):
    """scripts/registry makes BACKWARD the registry's default: the codec's first write under a fresh namespace
    (no `mlbus schemas register` before it) makes a subject that still refuses an incompatible change."""
    catalogue = load_catalogue(PROJECT_ROOT / "topics.yaml", namespace())
    client = admin(schema_registry, catalogue)
    record = "mlbus.Prediction"
    parsed = SCHEMAS.schema(record).parsed
    client.id_for(record, registry_form(parsed))                 # as the codec does at its first write
    with pytest.raises(RegistryRefused) as refused:
        client.id_for(record, changed(parsed, retyped="latency_ms"))          # double → string
    assert refused.value.status == 409
