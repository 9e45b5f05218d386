"""The schema registry clients' pure parts: subject names, the requests they send, their access settings and the
schema texts registered (tests/integration/test_schema_registry.py runs them against a real Apicurio Registry)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.adapters import registry_admin, RegistryAdmin, topic_schemas
from services.adapters.schema_registry import check_request, compatibility_request, set_compatibility_request
from services.bus.catalogue import load_catalogue
from services.bus.codec import SchemaCatalogue, load_schema_files, parse_announced, writer_schema
from services.bus.schema_registry import avro_body, configured_registry, SchemaRegistry, subject_for
from services.bus.settings import ConfigError, PROJECT_ROOT, Settings


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(PROJECT_ROOT / "topics.yaml", "ns.")


def connection(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"MLBUS_VAR": str(tmp_path), **env})


def test_subjects_follow_confluents_topic_name_strategy(catalogue):
    assert subject_for("t1.inference.predictions") == "t1.inference.predictions-value"
    assert SchemaRegistry("http://h", catalogue).subject_of("mlbus.Prediction") == "ns.inference.predictions-value"


def test_requests_carry_the_subject_quoted_and_an_avro_body():
    assert set_compatibility_request("a/b-value") == ("PUT", "/config/a%2Fb-value", {"compatibility": "BACKWARD"})
    assert compatibility_request("t.x-value") == ("GET", "/config/t.x-value", None)
    assert check_request("t.x-value", '"string"') == ("POST", "/compatibility/subjects/t.x-value/versions/latest"
                                                      "?verbose=true", {"schema": '"string"', "schemaType": "AVRO"})


def test_a_string_default_of_braces_is_sent_escaped_and_means_the_same_schema():
    text = json.dumps({"type": "record", "name": "R", "doc": 'say "{}"',
                       "fields": [{"name": "e", "type": "string", "default": "{}"}]}, separators=(",", ":"))
    sent = avro_body(text)["schema"]
    assert '"{}"' not in sent and json.loads(sent) == json.loads(text)


def test_access_comes_from_scripts_registrys_file_and_the_url_may_be_overridden(tmp_path, catalogue):
    config = tmp_path / "admin.properties"
    config.write_text("url=https://127.0.0.1:1/apis/ccompat/v7/\nusername=admin\npassword=p=w\nca=/none\n")
    with pytest.raises(FileNotFoundError):          # the CA named there is loaded: TLS is not skipped
        configured_registry(connection(tmp_path, MLBUS_REGISTRY_CONFIG=str(config)), catalogue)
    config.write_text(config.read_text().replace("ca=/none\n", ""))
    registry = configured_registry(connection(tmp_path, MLBUS_REGISTRY_CONFIG=str(config)), catalogue)
    assert registry is not None and registry.url == "https://127.0.0.1:1/apis/ccompat/v7"
    assert registry._authorization == "Basic YWRtaW46cD13"          # admin:p=w
    admin = registry_admin(connection(tmp_path, MLBUS_REGISTRY_CONFIG=str(config)), catalogue, "https://h:2/c/")
    assert isinstance(admin, RegistryAdmin) and admin.url == "https://h:2/c"
    assert admin._authorization == registry._authorization
    plain = configured_registry(connection(tmp_path, MLBUS_REGISTRY_URL="http://h:3/c/"), catalogue)
    assert plain is not None and (plain.url, plain._authorization) == ("http://h:3/c", "")
    assert configured_registry(connection(tmp_path), catalogue) is None
    with pytest.raises(ConfigError, match="MLBUS_REGISTRY_URL"):
        registry_admin(connection(tmp_path), catalogue)
    with pytest.raises(ConfigError, match="MLBUS_REGISTRY_CONFIG"):
        configured_registry(connection(tmp_path, MLBUS_REGISTRY_CONFIG=str(tmp_path / "gone")), catalogue)


def test_every_topic_with_a_schema_gets_one_subject_whose_text_is_the_writer_schema(catalogue):
    schemas = SchemaCatalogue(load_schema_files(PROJECT_ROOT / "schemas"))
    texts = topic_schemas(catalogue, schemas)
    with_schemas = [t for t in catalogue.primary() if t.schema]
    assert sorted(texts) == sorted(f"ns.{t.name}-value" for t in with_schemas)
    for topic in with_schemas:
        local = schemas.schema(str(topic.schema))
        announced = parse_announced(texts[f"ns.{topic.name}-value"], local.parsed)
        assert writer_schema(announced).fingerprint == local.fingerprint, topic.name
