import pytest
import yaml

from services.bus.catalogue import CatalogueError, build_catalogue, load_catalogue
from services.bus.codec import SchemaCatalogue
from services.bus.settings import PROJECT_ROOT

TOPICS = PROJECT_ROOT / "topics.yaml"


def test_every_topic_has_a_schema_that_exists():
    catalogue = load_catalogue(TOPICS)
    schemas = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas")
    for topic in catalogue.primary():
        assert schemas.schema(topic.schema).name == topic.schema


def test_every_consumed_topic_gets_a_dead_letter_topic():
    catalogue = load_catalogue(TOPICS)
    for topic in catalogue.primary():
        if topic.consumers:
            dlq = catalogue[topic.dlq]
            assert dlq.dead_letter_for == topic.name and dlq.schema is None


def test_audit_log_is_append_only_forever():
    audit = load_catalogue(TOPICS)["audit.log"]
    assert audit.partitions == 3        # its shards (services/domain/shards.py), fixed once made
    assert audit.config["retention.ms"] == "-1" and audit.config["retention.bytes"] == "-1"
    assert audit.config["cleanup.policy"] == "delete"


def test_handlers_find_topics_by_record_type():
    assert load_catalogue(TOPICS).for_schema("mlbus.DataValidated").name == "data.validated"


def test_namespace_prefixes_physical_names_only():
    catalogue = load_catalogue(TOPICS, namespace="t1.")
    assert catalogue.physical("kpis") == "t1.kpis"
    assert catalogue.logical("t1.kpis") == "kpis"
    assert catalogue["kpis"].name == "kpis"


def test_replication_override_applies_to_every_topic():
    assert {t.replication for t in load_catalogue(TOPICS, replication=3)} == {3}


def test_unknown_topic_names_the_known_ones():
    with pytest.raises(CatalogueError, match="unknown topic 'nope'.*data.batches"):
        load_catalogue(TOPICS)["nope"]


def test_a_schema_on_two_topics_is_refused():
    raw = {"topics": [{"name": n, "schema": "mlbus.Alert", "key": "k", "purpose": "p"} for n in ("a", "b")]}
    with pytest.raises(CatalogueError, match="carried by both"):
        build_catalogue(raw)


def test_a_topic_without_purpose_is_refused():
    with pytest.raises(CatalogueError, match="lacks purpose"):
        build_catalogue({"topics": [{"name": "a", "schema": "mlbus.Alert", "key": "k"}]})


def test_topics_yaml_and_catalogue_agree_on_names():
    raw = yaml.safe_load(TOPICS.read_text())
    assert [t["name"] for t in raw["topics"]] == [t.name for t in load_catalogue(TOPICS).primary()]
