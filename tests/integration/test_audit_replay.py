"""Compliance from audit.log on the real broker: replay at a moment T gives the inventory and deployments
the live registry had at T; rebuild-registry gives back the live database table by table; explain
answers for every prediction; timeline and export read the same log; a proof of one prediction checks
offline; `audit forget` erases a customer's features and nothing else."""
from __future__ import annotations

import io
import json
import math
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone

import fastavro
import pytest
import yaml

from services.bus.replay import read_messages
from services.adapters import audit_records, auditor_lag
from services.adapters import publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.databases import create_database, drop_database, table_rows
from tests.support.datasets import good, write
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.people import Cli
from tests.support.processes import running, stop
from tests.support.scoring import routed, send_requests
from tests.support.witness import cosigned, witness  # noqa: F401 (a fixture)

# The single-chain log these tests were written for: a v1 log (one partition), read as it always was.
pytestmark = pytest.mark.audit_shards(1)

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
MODEL = "breast_cancer_lr"
SERVICES = ("services.validator", "services.trainer", "services.deployer", "services.scorer",
            "services.auditor")


def database_rows(bus) -> dict[str, list[dict]]:
    return table_rows(bus.settings.storage.database_url)


def audit_caught_up(bus) -> bool:
    lag = auditor_lag(bus)              # every shard's group, erasures in each shard that reads them
    return sum(lag.values()) <= len(lag) * 3


def lifecycle(bus, version: int, kind: str) -> bool:
    return any(e["version"] == version and e["kind"] == kind for e in topic_values(bus, "models.lifecycle"))


@pytest.mark.usefixtures("witness")       # running all along: it co-signs each head, the last ones included
def test_replay_rebuild_and_explain_from_the_audit_log(bus, bus_env, cli, tmp_path, postgres_server):
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"model": MODEL, "metric": "roc_auc", "human_approval": True,
                                                          "approvers": ["ana"], "four_eyes": True}))
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log"))
        registry = stack.enter_context(running("services.registry", bus_env, tmp_path / "registry.log"))
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        wait_until(lambda: lifecycle(bus, 1, "registered"), timeout=180, message="v1 registered")
        assert cli("approve", MODEL, "1", "--reason", "reviewed", person="ana").returncode == 0
        wait_until(lambda: lifecycle(bus, 1, "promoted"), timeout=120, message="v1 deployed and promoted")
        deployed = wait_until(lambda: [d for d in topic_values(bus, "deployments") if d["phase"] == "completed"],
                              timeout=60, message="v1's deployment")
        routed(tmp_path / "services.scorer.log", deployed[-1])
        ids = send_requests(bus, MODEL, 30)
        read_topic(bus, "inference.predictions", expected=30, timeout=120)
        wait_until(lambda: audit_caught_up(bus), timeout=120, message="the auditor to catch up")
        live_at_t = database_rows(bus)
        t = datetime.now(timezone.utc)

        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0           # after T: v2
        assert cli("approve", MODEL, "2", "--reason", "also fine", person="ana").returncode == 0
        wait_until(lambda: lifecycle(bus, 2, "approved"), timeout=120, message="v2 approved")
        wait_until(lambda: audit_caught_up(bus), timeout=120, message="the auditor to catch up")
        stop(registry)
        live_now = database_rows(bus)

    replayed = json.loads(cli("audit", "replay", "--until", t.isoformat(), "--json").stdout)
    versions_at_t = {f"{row['model']}@{row['version']}": row["status"] for row in live_at_t["model_versions"]}
    assert {k: v["status"] for k, v in replayed["models"].items()} == versions_at_t == {f"{MODEL}@1": "approved"}
    assert replayed["models"][f"{MODEL}@1"]["aliases"] == ["champion"]
    assert [r["version"] for r in replayed["deployments"][MODEL]["routes"]] == [1]

    rebuilt = cli("audit", "rebuild-registry")
    assert rebuilt.returncode == 0, rebuilt.stderr
    rebuilt_rows = database_rows(bus)
    for table in live_now:
        differing = [row for row in rebuilt_rows[table] + live_now[table]
                     if (row in rebuilt_rows[table]) != (row in live_now[table])]
        assert rebuilt_rows[table] == live_now[table], (table, differing)
    assert len(live_now["lifecycle_events"]) >= 4
    postgres = f"t{uuid.uuid4().hex[:12]}"                   # and the same rows into PostgreSQL
    postgres_url = create_database(postgres_server, postgres)
    try:
        rebuilt = Cli({**bus_env, "MLBUS_DATABASE_URL": postgres_url}, prepared=True)("audit", "rebuild-registry")
        assert rebuilt.returncode == 0 and "(postgresql+psycopg)" in rebuilt.stdout, rebuilt.stderr
        assert table_rows(postgres_url) == live_now
    finally:
        drop_database(postgres_server, postgres)

    answers = cli("audit", "explain", *ids, "--json")
    assert answers.returncode == 0, answers.stderr
    for found in json.loads(answers.stdout).values():
        assert found["model_version"]["version"] == 1 and found["deployment"]["model"] == MODEL
        assert any(d["kind"] == "approved" and d["actor"] == "ana" for d in found["decisions"])
        assert found["data"] and found["data"][0]["passed"] and found["training_run"]["run_id"]
    assert cli("audit", "explain", "no-such-request").returncode == 1
    timeline = cli("audit", "timeline", MODEL)
    assert timeline.returncode == 0 and "approved" in timeline.stdout and "ana (signed, key" in timeline.stdout
    exported = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    assert [e["sequence"] for e in exported] == list(range(1, len(exported) + 1))
    cosigned(bus)
    assert cli("audit", "verify").returncode == 0
    (tmp_path / "auditor.pem").write_text(cli("audit", "key").stdout)
    (tmp_path / "witness.pem").write_text(cli("audit", "key", "--witness").stdout)
    proved = cli("audit", "prove", ids[0], "--out", str(tmp_path / "proof.json"))      # one prediction, by request id
    assert proved.returncode == 0, proved.stderr
    checked = cli("audit", "check-proof", str(tmp_path / "proof.json"), "--key", str(tmp_path / "auditor.pem"),
                  "--witness-key", str(tmp_path / "witness.pem"))
    assert checked.returncode == 0 and "inference.predictions" in checked.stdout, checked.stdout
    proved_record = json.loads(json.loads((tmp_path / "proof.json").read_text())["leaf_data"])
    assert ids[0].encode().hex() in proved_record["value"]          # the prediction's Avro bytes name the request
    explain_why_and_reproduce(cli, ids)
    forget_a_customer(bus, bus_env, cli, tmp_path, ids)


def explain_why_and_reproduce(cli, ids) -> None:
    """The archived artifact on the archived features gives the served answer again, for every prediction;
    a logistic regression's attributions add up, with the intercept, to its output in log-odds."""
    found = json.loads(cli("audit", "explain", ids[1], "--why", "--json").stdout)
    why, served = found["why"], found["prediction"]
    assert why["equal"] and why["max_difference"] <= 1e-9 and why["artifact_sha256"] == found["model_version"]["artifact_sha256"]
    attribution = why["attribution"]
    assert attribution["method"].startswith("exact") and attribution["unit"] == "log-odds"
    assert abs(attribution["baseline"] + sum(attribution["contributions"].values()) - attribution["output"]) < 1e-9
    explained = attribution["explained_class"]
    assert abs(1 / (1 + math.exp(-attribution["output"])) - served["probabilities"][explained]) < 1e-9
    assert set(attribution["contributions"]) == set(found["request"]["features"])
    text = cli("audit", "explain", ids[1], "--why").stdout
    assert "EQUAL to the served one" in text and "(exact (linear" in text
    [version] = json.loads(cli("audit", "reproduce", MODEL, "--json").stdout)
    assert (version["version"], version["equal"], version["different"]) == (1, len(ids), [])


def avro_map(values: dict[str, float]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, {"type": "map", "values": "double"}, values)
    return buffer.getvalue()


def forget_a_customer(bus, bus_env, cli, tmp_path, ids) -> None:
    """GDPR Art. 17: customer-0's features are sealed in audit.log from the start, and after `audit forget`
    unreadable for good; customer-1 stays readable; the log and a proof made before still verify."""
    exported = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    [request] = [e for e in exported if e["topic"] == "inference.requests" and e["value"]["request_id"] == ids[0]]
    assert request["personal_data"] == "readable" and request["value"]["features"]       # the admin holds the keys
    features = avro_map(request["value"]["features"])          # the features' bytes as the request carried them
    assert any(features in m.value() for m in read_messages(bus, ["inference.requests"]))  # the search finds them
    before = tmp_path / "request-proof.json"
    assert cli("audit", "prove", str(request["sequence"]), "--out", str(before)).returncode == 0
    with running("services.auditor", bus_env, tmp_path / "auditor-after.log"):
        assert cli("audit", "forget", "customer-0", "--reason", "GDPR request 7", person="lead").returncode == 0
        refused = cli("audit", "forget", "customer-1", "--reason", "not an admin", person="ana")
        assert refused.returncode == 1 and "authorization failed" in refused.stderr         # the broker's ACL
        wait_until(lambda: any(r["source_topic"] == "audit.erasures" for r in audit_records(bus)),
                   timeout=120, message="the auditor to audit the erasure")
    assert not any(features in m.value() for m in read_messages(bus, ["audit.log"]))   # never in clear in the log
    answer = json.loads(cli("audit", "explain", ids[0], "--json").stdout)["request"]
    assert answer["features"] == {} and answer["personal_data"] == "erased"
    assert answer["erased"]["by"].startswith("lead (signed") and answer["erased"]["reason"] == "GDPR request 7"
    assert "features: ERASED on" in cli("audit", "explain", ids[0]).stdout
    kept = json.loads(cli("audit", "explain", ids[1], "--json").stdout)["request"]
    assert kept["personal_data"] == "readable" and kept["features"]
    after = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    assert all(e["value"]["features"] == {} for e in after if e["topic"] == "inference.requests"
               and e["value"]["entity_id"] == "customer-0")
    cosigned(bus)
    assert cli("audit", "verify").returncode == 0
    (tmp_path / "auditor.pem").write_text(cli("audit", "key").stdout)
    assert cli("audit", "check-proof", str(before), "--key", str(tmp_path / "auditor.pem"), "--witness-key",
               str(tmp_path / "witness.pem")).returncode == 0
