"""Red team, issue 37: `mlbus k8s render` fed what a careless operator or a hostile insider would give it.

Classes: names Kubernetes cannot spell (a person's principal is the KafkaUser's name, which Strimzi makes the
broker's user name: renamed, it connects as someone no ACL is for; two names folding into one are one object);
a person named as a service or the admin (one KafkaUser, one password: shared rights); --person as `mlbus people
add` makes the principal (MLBUS_NAMESPACE + name) and with several roles; hostile --namespace, --cluster, --image
and --out refused before anything is written; the render needs no network; what the NetworkPolicies let out."""
from __future__ import annotations

import json
import socket

import pytest
import yaml

from services.bus import Bus, Settings
from services.bus.access import plan_acls, service_principals
from services.bus.catalogue import build_catalogue
from services.bus.settings import ConfigError, PROJECT_ROOT
from services.bus.supervision import SERVICES
from services.cli.k8s.policies import OUTSIDE_PORTS
from services.cli.k8s.render import render, workloads
from services.cli.k8s.target import Target, resource_name
from services.cli.main import main
from tests.unit.k8s.test_render import grants_of

CATALOGUE = Bus.from_settings(Settings.from_env({"MLBUS_NAMESPACE": "t1."})).catalogue
TARGET = Target("mlbus-test", "kafka-one", "registry.example/mlbus:1", "t1.")
SERVICES_ONLY = workloads(SERVICES)


def users(base) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in base.files["kafka-users.yaml"]}


@pytest.mark.parametrize("principal", ["Ana", "t1.ana_b", "ANA", "ana b", "a..b", "x" * 300, "ana/../bo"])
def test_a_principal_kubernetes_cannot_spell_is_refused_never_renamed(principal):
    with pytest.raises(ConfigError, match="cannot be a Strimzi KafkaUser"):
        render(CATALOGUE, {principal: ["approver"]}, SERVICES_ONLY, TARGET)


def test_names_that_fold_into_one_kubernetes_name_are_refused():
    raw = yaml.safe_load((PROJECT_ROOT / "topics.yaml").read_text())
    first = raw["topics"][0]            # data.batches
    upper = {**first, "name": first["name"].upper(), "schema": "mlbus.Upper"}       # a topic of its own to Kafka
    catalogue = build_catalogue({**raw, "topics": [*raw["topics"], upper]}, "t1.")
    with pytest.raises(ConfigError, match="same name: KafkaTopic t1.data.batches"):
        render(catalogue, {}, SERVICES_ONLY, TARGET)
    dashed = {**first, "name": first["name"].replace(".", "_"), "schema": "mlbus.Dashed"}    # data_batches
    alone = build_catalogue({**raw, "topics": [*raw["topics"], dashed]}, "t1.")
    topics = render(alone, {}, SERVICES_ONLY, TARGET).files["kafka-topics.yaml"]
    assert {t["metadata"]["name"]: t["spec"]["topicName"] for t in topics}["t1.data-batches"] == "t1.data_batches"


@pytest.mark.parametrize("name", ["scorer", "auditor", "app", "admin"])
def test_a_person_named_as_a_service_or_the_admin_is_refused(name, tmp_path, capsys):
    with pytest.raises(ConfigError, match="not a person's"):
        render(CATALOGUE, {name: ["admin"]}, SERVICES_ONLY, TARGET)
    assert main(["k8s", "render", "--out", str(tmp_path / "k8s"), "--person", f"{name}=admin"]) == 2
    assert "not a person's" in capsys.readouterr().err and not (tmp_path / "k8s").exists()


def test_a_person_is_rendered_as_the_principal_people_add_makes_with_every_role_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBUS_NAMESPACE", "t1.")
    out = tmp_path / "k8s"
    assert main(["k8s", "render", "--out", str(out), "--person", "ana=approver", "--person", "ana=dpo,viewer"]) == 0
    rendered = {d["metadata"]["name"]: d for d in yaml.safe_load_all((out / "kafka-users.yaml").read_text())}
    assert "ana" not in rendered                      # `people add ana` under t1. connects as t1.ana
    planned = {(g.principal, g.resource, g.name, g.pattern, g.operation)
               for g in plan_acls(CATALOGUE, {"t1.ana": ["approver", "dpo", "viewer"]}) if g.principal == "t1.ana"}
    assert grants_of(rendered["t1.ana"]) == planned
    assert any(g[2] == "t1.audit.keys" for g in planned)           # the dpo role of the second --person too


@pytest.mark.parametrize("name", ["Ana", "ana.b", "1ana", "a" * 64, "ana=", "é", "../ana"])
def test_a_person_people_add_would_refuse_is_a_usage_error(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["k8s", "render", "--out", str(tmp_path / "k8s"), "--person", f"{name}=viewer"])
    assert raised.value.code == 2 and not (tmp_path / "k8s").exists()


def test_a_person_people_add_takes_but_strimzi_cannot_name_is_refused_clearly(tmp_path, capsys):
    assert main(["k8s", "render", "--out", str(tmp_path / "k8s"), "--person", "ana_b=viewer"]) == 2
    assert "'ana_b' cannot be a Strimzi KafkaUser" in capsys.readouterr().err and not (tmp_path / "k8s").exists()


@pytest.mark.parametrize("option, value", [
    ("--namespace", ""), ("--namespace", "../etc"), ("--namespace", "Mlbus"), ("--namespace", "a" * 64),
    ("--namespace", "mlbus\nkind: Secret"), ("--namespace", "ml.bus"), ("--namespace", "-mlbus"),
    ("--cluster", ""), ("--cluster", "Kafka"), ("--cluster", "k" * 48), ("--cluster", "1kafka"),
    ("--cluster", "kafka\n  x: y"), ("--replication", "0"), ("--replication", "32768"),
    ("--image", ""), ("--image", "mlbus:1\ncommand: [sh]"), ("--image", "a b"),
])
def test_a_hostile_target_is_refused_before_anything_is_written(option, value, tmp_path, capsys):
    assert main(["k8s", "render", "--out", str(tmp_path / "k8s"), f"{option}={value}"]) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "k8s").exists()


def test_the_longest_names_a_cluster_takes_are_rendered():
    Target("n" * 63, "k" * 47, "mlbus:1")
    assert resource_name("a." * 200 + "b") == ("a." * 126 + "a")[:253].rstrip(".")


def test_out_onto_a_file_is_a_usage_error_and_onto_a_directory_leaves_other_files(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(["k8s", "render", "--out", str(tmp_path / "file")]) == 2
    assert (tmp_path / "file").read_text() == "mine" and "is a file" in capsys.readouterr().err
    out = tmp_path / "base"
    (out / "overlay").mkdir(parents=True)
    (out / "overlay" / "patch.yaml").write_text("kept")
    (out / "notes.txt").write_text("kept")
    assert main(["k8s", "render", "--out", str(out)]) == 0
    assert (out / "overlay" / "patch.yaml").read_text() == (out / "notes.txt").read_text() == "kept"
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert "notes.txt" not in listed and all((out / name).is_file() for name in listed)


def test_the_render_opens_no_connection(tmp_path, monkeypatch, capsys):
    def refused(*args, **kwargs):
        raise AssertionError(f"the render connected: {args}")
    monkeypatch.setattr(socket.socket, "connect", refused)
    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setenv("MLBUS_BOOTSTRAP", "nowhere.invalid:9092")
    assert main(["k8s", "render", "--out", str(tmp_path / "k8s"), "--json", "--person", "ana=viewer"]) == 0
    assert json.loads(capsys.readouterr().out)["files"]["kafka-users.yaml"] == ["KafkaUser"]


def test_every_dlq_is_a_topic_and_every_principal_of_any_topic_a_user():
    base = render(CATALOGUE, {"t1.ana": ["viewer"]}, SERVICES_ONLY, TARGET)
    topics = {m["spec"]["topicName"] for m in base.files["kafka-topics.yaml"]}
    dlqs = {CATALOGUE.physical(t.name) for t in CATALOGUE if t.dead_letter_for}
    assert dlqs and dlqs <= topics
    assert set(users(base)) == {*service_principals(CATALOGUE), "t1.ana", "admin"}


def test_egress_goes_only_to_the_brokers_and_dns_of_the_namespace():
    base = render(CATALOGUE, {}, SERVICES_ONLY, TARGET)
    policies = [m for m in base.files["network.yaml"] if m["kind"] == "NetworkPolicy"]
    # no rule to everywhere, but the registry's and the notifier's to their database and sinks, by port only
    outside = {f"mlbus-{service}-outside": ports for service, ports in OUTSIDE_PORTS.items()}
    egress = [(p["metadata"]["name"], rule) for p in policies for rule in p["spec"].get("egress", [])
              if p["metadata"]["name"] not in outside]
    assert all(rule.get("to") and rule.get("ports") for _, rule in egress)
    for p in policies:
        if p["metadata"]["name"] in outside:
            [rule] = p["spec"]["egress"]
            assert "to" not in rule and [port["port"] for port in rule["ports"]] == outside[p["metadata"]["name"]]
            assert p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] in OUTSIDE_PORTS
    for _, rule in egress:
        for peer in rule["to"]:
            assert "ipBlock" not in peer
            selected = peer["podSelector"]["matchLabels"]
            assert selected.get("strimzi.io/kind") == "Kafka" or selected == {"k8s-app": "kube-dns"}
    pods = {m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
            for m in base.files["deployments.yaml"]}
    fenced = next(p for p in policies if "Egress" in p["spec"]["policyTypes"])["spec"]["podSelector"]["matchLabels"]
    assert all(fenced.items() <= labels.items() for labels in pods.values())   # every pod is fenced


@pytest.mark.parametrize("service, port", [("registry", 5432), ("notifier", 443), ("notifier", 587)])
def test_the_registry_reaches_its_database_and_the_notifier_its_sinks(service, port):
    """Found by the red team: the registry's Secret holds a PostgreSQL URL, the notifier sends webhooks and mail,
    and the policy let every service reach only the brokers. Only these two get a way out, and only on these ports."""
    base = render(CATALOGUE, {}, SERVICES_ONLY, TARGET)
    policies = [m for m in base.files["network.yaml"] if m["kind"] == "NetworkPolicy"]

    def ports(name: str) -> set[int]:
        pod = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "mlbus"}
        return {port["port"] for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= pod.items()
                for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])}
    assert port in ports(service)
    assert port not in ports("scorer") and ports("scorer") == {9093, 53}


def test_the_secrets_a_service_reads_are_its_own_whatever_people_are_named():
    base = render(CATALOGUE, {"t1.ana": ["admin", "dpo"], "mlbus-auditor": ["viewer"]}, SERVICES_ONLY, TARGET)
    for deployment in base.files["deployments.yaml"]:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        read = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c["env"]
                if "secretKeyRef" in e.get("valueFrom", {})} | {v["secret"]["secretName"] for v in pod["volumes"]
                                                                 if "secret" in v}
        assert read <= {name, f"mlbus-{name}", TARGET.ca_secret}, name
