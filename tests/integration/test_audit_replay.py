"""Compliance from audit.log on the real broker: replay at a moment T gives the inventory and deployments
the live registry had at T; rebuild-registry gives back the live database table by table; explain
answers for every prediction; timeline and export read the same log."""
from __future__ import annotations

import json
import sqlite3
from contextlib import ExitStack
from datetime import datetime, timezone

import yaml

from services.domain.datasets import publish_batch
from services.bus.settings import PROJECT_ROOT
from services.bus.topics import consumer_lag
from tests.support.datasets import good, write
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.processes import running, stop
from tests.support.scoring import send_requests

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
MODEL = "breast_cancer_lr"
SERVICES = ("services.validator", "services.trainer", "services.deployer", "services.scorer",
            "services.auditor")
TABLES = ("model_versions", "lifecycle_events", "aliases", "policies")


def database_rows(bus) -> dict[str, list[tuple]]:
    with sqlite3.connect(bus.settings.database_url.removeprefix("sqlite:///")) as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def audit_caught_up(bus) -> bool:
    topics = [name for name in bus.catalogue.topics if name not in ("audit.log", "audit.checkpoints")]
    return sum(consumer_lag(bus, f"{bus.settings.namespace}mlbus.auditor", topics).values()) <= len(topics) * 3


def lifecycle(bus, version: int, kind: str) -> bool:
    return any(e["version"] == version and e["kind"] == kind for e in topic_values(bus, "models.lifecycle"))


def test_replay_rebuild_and_explain_from_the_audit_log(bus, bus_env, cli, tmp_path):
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
    versions_at_t = {f"{row[0]}@{row[1]}": row[2] for row in live_at_t["model_versions"]}
    assert {k: v["status"] for k, v in replayed["models"].items()} == versions_at_t == {f"{MODEL}@1": "approved"}
    assert replayed["models"][f"{MODEL}@1"]["aliases"] == ["champion"]
    assert [r["version"] for r in replayed["deployments"][MODEL]["routes"]] == [1]

    rebuilt = cli("audit", "rebuild-registry")
    assert rebuilt.returncode == 0, rebuilt.stderr
    rebuilt_rows = database_rows(bus)
    for table in TABLES:
        assert rebuilt_rows[table] == live_now[table], (table, set(rebuilt_rows[table]) ^ set(live_now[table]))
    assert len(live_now["lifecycle_events"]) >= 4

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
    assert cli("audit", "verify").returncode == 0
    (tmp_path / "auditor.pem").write_text(cli("audit", "key").stdout)
    proved = cli("audit", "prove", ids[0], "--out", str(tmp_path / "proof.json"))      # one prediction, by request id
    assert proved.returncode == 0, proved.stderr
    checked = cli("audit", "check-proof", str(tmp_path / "proof.json"), "--key", str(tmp_path / "auditor.pem"))
    assert checked.returncode == 0 and "inference.predictions" in checked.stdout, checked.stdout
    proved_record = json.loads(json.loads((tmp_path / "proof.json").read_text())["leaf_data"])
    assert ids[0].encode().hex() in proved_record["value"]          # the prediction's Avro bytes name the request
