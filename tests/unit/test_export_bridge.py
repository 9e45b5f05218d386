"""The export bridge's pure decisions: the copy of a record's value, the copies' names and settings, the bridge's
name, offsets, when it has caught up, copies another bridge wrote; topics.yaml `export:` and the ACLs it implies."""
from __future__ import annotations

import pytest

from services.bus.access import EXPORTER, Grant, plan_acls, service_principals
from services.bus.catalogue import CatalogueError, build_catalogue, load_catalogue
from services.bus.codec import CONFLUENT_HEADER_LEN, HEADER_LEN, MARKER, SchemaCatalogue, load_schema_files
from services.bus.settings import PROJECT_ROOT
from services.exporter.decide import (bridge_name, caught_up, copied_value, copy_config, first_offsets,
                                      foreign_copies, next_offsets)

BODY = b"\x02ab\x04cd"


def entry(name: str = "kpis", **extra) -> dict:
    return {"name": name, "schema": f"mlbus.{name.title()}", "key": "k", "purpose": "p", "consumers": ["auditor"],
            **extra}


def test_a_single_object_record_s_copy_is_00_the_id_and_the_same_body_bytes():
    payload = MARKER + bytes(range(8)) + BODY
    assert copied_value(payload, HEADER_LEN, 258) == b"\x00\x00\x00\x01\x02" + BODY


def test_a_record_already_in_confluent_framing_is_copied_as_it_is():
    payload = b"\x00\x00\x00\x00\x07" + BODY
    assert copied_value(payload, CONFLUENT_HEADER_LEN, None) is payload


def test_a_single_object_record_without_a_registry_id_is_refused():
    with pytest.raises(ValueError):
        copied_value(MARKER + bytes(8) + BODY, HEADER_LEN, None)


def test_the_copy_keeps_the_source_s_settings_but_stamps_no_time_of_its_own():
    assert copy_config({"retention.ms": "-1", "message.timestamp.type": "LogAppendTime"}) == {"retention.ms": "-1"}


def test_a_bridge_is_named_by_its_set_of_topics_whatever_their_order():
    assert bridge_name(["kpis", "deployments", "kpis"], "confluent") == bridge_name(["deployments", "kpis"],
                                                                                    "confluent")
    assert bridge_name(["kpis"], "confluent") != bridge_name(["kpis", "deployments"], "confluent")
    assert bridge_name(["kpis"], "confluent").startswith("export.confluent.")


def test_offsets_to_commit_are_one_past_the_last_and_a_rewind_goes_to_the_first():
    places = [("t", 0, 5), ("t", 1, 9), ("t", 0, 6), ("u", 0, 1)]
    assert next_offsets(places) == {("t", 0): 7, ("t", 1): 10, ("u", 0): 2}
    assert first_offsets(places) == {("t", 0): 5, ("t", 1): 9, ("u", 0): 1}


def test_caught_up_once_every_partition_reached_its_end_at_start():
    targets = {("t", 0): 10, ("t", 1): 0}
    assert not caught_up({("t", 0): 10}, targets)
    assert not caught_up({("t", 0): 9, ("t", 1): 0}, targets)
    assert caught_up({("t", 0): 12, ("t", 1): 0}, targets)


def test_a_copy_written_by_another_bridge_is_found_where_this_one_never_committed():
    committed = {("t", 0): -1001, ("t", 1): 40, ("t", 2): -1001}
    assert foreign_copies(committed, {("t", 0): 3, ("t", 2): 0}) == [("t", 0)]


def test_the_shipped_exports_are_of_topics_without_people_s_data():
    catalogue = load_catalogue(PROJECT_ROOT / "topics.yaml", "ns.")
    exported = catalogue.exported()
    assert exported and all(not t.private and not t.personal for t in exported)
    assert catalogue.copy_of("kpis") == "ns.kpis.confluent"
    with pytest.raises(CatalogueError, match="inference.requests is not exportable"):
        catalogue.copy_of("inference.requests")
    schemas = SchemaCatalogue(load_schema_files(PROJECT_ROOT / "schemas"))
    assert all(schemas.schema(str(t.schema)) for t in exported)


@pytest.mark.parametrize("sensitive", [{"private": True}, {"personal": ["email"]}])
def test_a_private_or_personal_topic_is_exported_only_when_the_entry_allows_it(sensitive):
    with pytest.raises(CatalogueError, match="allow_personal: true"):
        build_catalogue({"topics": [entry(export={"to": "confluent"}, **sensitive)]})
    allowed = build_catalogue({"topics": [entry(export={"to": "confluent", "allow_personal": True}, **sensitive)]})
    assert allowed.copy_of("kpis") == "kpis.confluent"


@pytest.mark.parametrize("export", [{"to": "avro"}, "confluent", {"to": "confluent", "reader": ["app"]}])
def test_a_malformed_export_is_refused(export):
    with pytest.raises(CatalogueError, match="export must be"):
        build_catalogue({"topics": [entry(export=export)]})


def test_an_unconsumed_topic_or_a_copy_named_like_a_topic_is_refused():
    with pytest.raises(CatalogueError, match="only a consumed topic"):
        build_catalogue({"topics": [entry(export={"to": "confluent"}, consumers=[])]})
    with pytest.raises(CatalogueError, match="is a topic of topics.yaml already"):
        build_catalogue({"topics": [entry(export={"to": "confluent"}), entry("kpis.confluent")]})


def test_the_exporter_reads_the_topic_makes_and_writes_its_copy_and_dead_letters_nothing_more():
    catalogue = build_catalogue({"topics": [entry(export={"to": "confluent", "readers": ["app"]}),
                                            entry("other")]}, "ns.")
    grants = plan_acls(catalogue, {"ana": ["viewer"]})
    on_topics = {(g.name, g.operation) for g in grants if g.principal == EXPORTER and g.resource == "topic"}
    assert on_topics == {("ns.kpis", "read"), ("ns.kpis.confluent", "create"), ("ns.kpis.confluent", "write"),
                         ("ns.kpis.confluent", "read"), ("ns.kpis.dlq", "write")}
    assert {g.principal for g in grants if g.name == "ns.kpis.confluent" and g.operation == "read"} == \
        {"app", "ana", EXPORTER}
    assert Grant(EXPORTER, "transactional_id", "ns.mlbus.exporter.", "prefixed", "write") in grants
    assert EXPORTER in service_principals(catalogue)


def test_the_copy_of_a_private_topic_is_private_too():
    catalogue = build_catalogue({"topics": [entry(private=True, export={"to": "confluent", "readers": ["app"],
                                                                        "allow_personal": True})]})
    readers = {g.principal for g in plan_acls(catalogue, {"ana": ["viewer"]})
               if g.name == "kpis.confluent" and g.operation == "read"}
    assert readers == {"app", EXPORTER}


def test_without_exports_there_is_no_exporter():
    catalogue = build_catalogue({"topics": [entry()]})
    assert EXPORTER not in service_principals(catalogue)
    assert not any(g.principal == EXPORTER for g in plan_acls(catalogue))
