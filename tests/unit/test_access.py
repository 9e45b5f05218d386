"""ACLs derived from topics.yaml (pure): what each principal gets, and nothing more."""
from services.bus import Bus, Settings
from services.bus.access import Grant, plan_acls, service_principals

BUS = Bus.from_settings(Settings.from_env({"MLBUS_NAMESPACE": "t1."}))


def topic_grants(grants: set[Grant], principal: str, operation: str) -> set[str]:
    return {g.name.removeprefix("t1.") for g in grants if g.principal == principal and g.resource == "topic"
            and g.operation == operation}


def test_services_write_what_they_produce_and_their_dlqs_and_read_what_they_consume_or_read():
    grants = plan_acls(BUS.catalogue)
    assert topic_grants(grants, "scorer", "write") == {"inference.predictions", "inference.requests.dlq",
                                                       "models.trained.dlq", "deployments.dlq"}
    assert topic_grants(grants, "scorer", "read") == {"inference.requests", "models.trained", "deployments",
                                                      "schemas", "identities", "features.views", "features.online"}
    assert {g.principal for g in grants if g.name == "t1.audit.log" and g.operation == "write"} == {"auditor"}
    assert not [g for g in grants if g.name.endswith("schemas") and g.operation == "write"], "the admin's alone"
    assert "models.lifecycle" not in topic_grants(grants, "app", "write")


def test_groups_and_transactional_ids_are_the_principals_own_and_no_person_exists_without_roles():
    grants = plan_acls(BUS.catalogue)
    validator = {(g.resource, g.name, g.pattern, g.operation) for g in grants
                 if g.principal == "validator" and g.resource != "topic"}
    assert validator == {("group", "t1.mlbus.validator", "literal", "read"),
                         ("group", "t1.mlbus.validator.", "prefixed", "read"),
                         ("transactional_id", "t1.mlbus.validator.", "prefixed", "write"),
                         ("cluster", "kafka-cluster", "literal", "idempotent_write")}
    assert "admin" not in service_principals(BUS.catalogue)


def test_people_write_by_role_read_all_but_private_topics_and_admin_holds_every_role():
    grants = plan_acls(BUS.catalogue, {"t1.ana": ["approver"], "t1.lead": ["admin"]})
    assert topic_grants(grants, "t1.ana", "write") == {"approvals"}
    assert "inference.requests" not in topic_grants(grants, "t1.ana", "read")
    assert "approvals" in topic_grants(grants, "t1.ana", "read")
    assert {"models.policies", "approvals", "deploy.requests", "models.specs"} <= topic_grants(grants, "t1.lead",
                                                                                                 "write")
