"""`mlbus k8s render`'s pure core: every catalogue topic and principal is there, each KafkaUser's ACLs are what
`mlbus acl plan` prints, and each service gets its own Secret, probes on what it serves, and its fence."""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest

from services.bus import Bus, Settings
from services.bus.access import service_principals
from services.bus.supervision import SERVICES
from services.cli import acl_cmd, k8s_cmd
from services.cli.k8s.render import render, workloads
from services.cli.k8s.strimzi import PATTERN_TYPES, RESOURCE_TYPES
from services.cli.k8s.target import Target, resource_name
from services.cli.k8s_cmd import person
from services.domain import shard_group

BUS = Bus.from_settings(Settings.from_env({"MLBUS_NAMESPACE": "t1."}))
PEOPLE = {"ana": ["approver"], "bo": ["admin"], "dee": ["dpo", "viewer"]}
TARGET = Target("mlbus-test", "kafka-one", "registry.example/mlbus:1", "t1.")
BASE = render(BUS.catalogue, PEOPLE, workloads(SERVICES), TARGET)


def manifests(kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for found in BASE.files.values() for m in found if m["kind"] == kind}


def grants_of(user: dict) -> set[tuple]:
    """A KafkaUser's ACLs back in access.Grant's terms (principal, resource, name, pattern, operation)."""
    resources = {v: k for k, v in RESOURCE_TYPES.items()}
    patterns = {v: k for k, v in PATTERN_TYPES.items()}
    found = set()
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        assert acl["type"] == "allow" and acl["host"] == "*"
        resource = acl["resource"]
        name, pattern = resource.get("name", "kafka-cluster"), patterns[resource.get("patternType", "literal")]
        for operation in acl["operations"]:
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
            found.add((user["metadata"]["name"], resources[resource["type"]], name, pattern, snake))
    return found


def acl_plan(capsys, monkeypatch) -> set[tuple]:
    """What `mlbus acl plan --json` prints for these people (the identities topic's, faked)."""
    monkeypatch.setattr(acl_cmd, "people_roles", lambda bus: PEOPLE)
    assert acl_cmd.plan_command(SimpleNamespace(catalogue=BUS.catalogue), argparse.Namespace(json=True)) == 0
    return {(g["principal"], g["resource"], g["name"], g["pattern"], g["operation"])
            for g in json.loads(capsys.readouterr().out)}


def test_every_catalogue_topic_is_a_kafka_topic_as_topics_yaml_makes_it():
    topics = {t["spec"]["topicName"]: t for t in manifests("KafkaTopic").values()}
    assert set(topics) == {BUS.catalogue.physical(t.name) for t in BUS.catalogue}
    for topic in BUS.catalogue:
        spec = topics[BUS.catalogue.physical(topic.name)]["spec"]
        assert (spec["partitions"], spec["replicas"], spec["config"]) == (topic.partitions, topic.replication,
                                                                          dict(topic.config))
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == "kafka-one" for t in topics.values())
    assert topics["t1.audit.log"]["spec"]["config"]["retention.ms"] == "-1"


def test_every_principal_is_a_scram_user_with_exactly_the_acls_of_acl_plan(capsys, monkeypatch):
    users = manifests("KafkaUser")
    assert set(users) == {*service_principals(BUS.catalogue), *PEOPLE, "admin"}
    assert all(u["spec"]["authentication"] == {"type": "scram-sha-512"} for u in users.values())
    planned = acl_plan(capsys, monkeypatch)
    rendered = set().union(*(grants_of(u) for u in users.values()))
    assert rendered == planned
    for principal in users:       # per principal too: an ACL on the wrong user would cancel out above
        assert grants_of(users[principal]) == {g for g in planned if g[0] == principal}, principal
    assert "authorization" not in users["admin"]["spec"]        # the super user: no ACL, as acl plan has none


def test_every_service_is_a_deployment_probed_on_what_it_serves():
    deployments = manifests("Deployment")
    assert set(deployments) == set(SERVICES)
    for name, found in deployments.items():
        container = found["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["command"][:3] == ["python", "-m", SERVICES[name]]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        probes = [container.get("readinessProbe"), container.get("livenessProbe")]
        if name == "witness":           # no runtime: it serves nothing, so nothing to probe
            assert probes == [None, None] and "MLBUS_METRICS_PORT" not in env
        elif name == "console":
            assert [p["httpGet"] for p in probes] == [{"path": "/healthz", "port": 8080, "scheme": "HTTPS"}] * 2
        else:                           # the runtime serves /metrics on MLBUS_METRICS_PORT, on every address
            assert [p["httpGet"]["path"] for p in probes] == ["/metrics"] * 2
            assert probes[0]["httpGet"]["port"] == int(env["MLBUS_METRICS_PORT"]) and env["MLBUS_METRICS_HOST"]
        assert (env["MLBUS_KAFKA_SASL_USERNAME"], env["MLBUS_BOOTSTRAP"]) == (name, "kafka-one-kafka-bootstrap:9093")


def secrets_used(deployment: dict) -> set[str]:
    pod = deployment["spec"]["template"]["spec"]
    from_env = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
    return from_env | {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}


def test_each_service_reads_only_its_own_secrets_and_none_is_rendered():
    generators = {g["name"]: g for g in BASE.kustomization["secretGenerator"]}
    for name, found in manifests("Deployment").items():
        own = {name, f"mlbus-{name}"}      # Strimzi's Secret of its KafkaUser; the one of its keys
        assert secrets_used(found) <= own | {TARGET.ca_secret}, name
        for entry in generators.get(f"mlbus-{name}", {}).get("files", []):
            assert entry.partition("=")[2].startswith(f"secrets/{name}/")
    assert set(generators) == {"mlbus-auditor", "mlbus-registry", "mlbus-notifier", "mlbus-console"}
    assert not any(g.get("literals") for g in generators.values()) and not manifests("Secret")


def test_the_scorer_and_auditor_copies_scale_by_lag_and_the_auditor_by_its_shard_groups():
    scaled = manifests("ScaledObject")
    assert set(scaled) == {"scorer", "auditor"} == set(manifests("PodDisruptionBudget"))
    shards = BUS.catalogue["audit.log"].partitions
    auditor = scaled["auditor"]["spec"]
    assert [t["metadata"]["consumerGroup"] for t in auditor["triggers"]] == [
        shard_group("t1.mlbus.auditor", k) for k in range(shards)]
    assert (auditor["minReplicaCount"], auditor["maxReplicaCount"]) == (1, shards)
    assert [t["metadata"]["consumerGroup"] for t in scaled["scorer"]["spec"]["triggers"]] == ["t1.mlbus.scorer"]
    for name, found in scaled.items():
        assert all(t["type"] == "kafka" and t["authenticationRef"]["name"] == name for t in found["spec"]["triggers"])
        assert "replicas" not in manifests("Deployment")[name]["spec"]       # KEDA's to set
    auth = manifests("TriggerAuthentication")["scorer"]["spec"]
    assert {r["name"] for r in auth["secretTargetRef"]} == {"scorer", TARGET.ca_secret}


def test_services_reach_only_the_brokers_and_dns_and_the_console_takes_its_port():
    policies = manifests("NetworkPolicy")
    services = policies["mlbus-services"]["spec"]
    assert services["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "mlbus"}}
    assert [rule["ports"] for rule in services["egress"]] == [
        [{"protocol": "TCP", "port": 9093}], [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]]
    assert services["egress"][0]["to"][0]["podSelector"]["matchLabels"]["strimzi.io/cluster"] == "kafka-one"
    assert policies["mlbus-console"]["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert manifests("Service")["console"]["spec"]["ports"][0]["port"] == 8080


def test_names_and_people_arguments():
    assert resource_name("T1_ns.data.batches") == "t1-ns.data.batches"
    assert person("ana=approver,viewer") == ("ana", ["approver", "viewer"])
    for wrong in ("ana", "ana=", "ana=pope"):
        with pytest.raises(argparse.ArgumentTypeError):
            person(wrong)
    assert BASE.kustomization["namespace"] == "mlbus-test" and set(BASE.kustomization["resources"]) == set(
        BASE.files)


def test_prepare_declares_the_auditors_key_and_announces_the_schemas_as_admin(monkeypatch):
    done = []
    monkeypatch.setattr(k8s_cmd, "declare_log_key", lambda bus: done.append("key") or SimpleNamespace(key_id="k1"))
    monkeypatch.setattr(k8s_cmd, "announce_all", lambda bus: done.append("schemas"))
    bus = SimpleNamespace(settings=SimpleNamespace(audit=SimpleNamespace(key="/keys/auditor.ed25519")))
    assert k8s_cmd.prepare_command(bus, argparse.Namespace()) == 0
    assert done == ["key", "schemas"]


def test_a_rendered_topic_has_three_replicas_and_min_insync_two_unless_told(tmp_path, monkeypatch):
    """A Kubernetes cluster's topics: topics.yaml's one replica is the local broker's, and a partition of one
    replica (or an ISR shrunk to its leader) loses its leader when that broker stops, which can break a
    transaction in Kafka itself (docs/explanation/guarantees.md)."""
    import yaml
    from services.cli.main import main
    monkeypatch.delenv("MLBUS_REPLICATION", raising=False)
    for flags, replicas, insync in (([], 3, "2"), (["--replication", "5"], 5, "2"), (["--replication", "1"], 1, None)):
        out = tmp_path / f"k8s-{replicas}"
        assert main(["k8s", "render", "--out", str(out), *flags]) == 0
        topics = list(yaml.safe_load_all((out / "kafka-topics.yaml").read_text()))
        assert topics and all(t["spec"]["replicas"] == replicas for t in topics)
        assert all(t["spec"]["config"].get("min.insync.replicas") == insync for t in topics)
