"""The mlbus story, told on a real local Kafka broker. Run through scripts/demo (it sets up first).

The story so far: a data contract, a model spec and a promotion policy; a good and a bad batch; the
validator rejecting the bad one with reasons; the trainer training a version with full lineage, and the
run reproduced; the registry holding it for a named approver (a stranger and a four-eyes violation
refused); the deployer putting it into service and the scorer answering traffic; a second version going
out as a canary gated on live evidence; a service of your own; bad input in a dead-letter topic with its
bytes intact; production drift detected, alerted on and answered by a retraining that is approved and
deployed; the shop's (simulated) conversion KPI joined with the deployment timeline; and governance from
the audit log alone: the timeline, one prediction explained end to end, the state replayed at a moment
before the retraining, the registry's database rebuilt, and the hash chain verified.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_VAR = ROOT / "var" / "demo"                # the admin's machine (and the services')
PEOPLE_HOMES = ROOT / "var" / "demo-people"     # each person's own machine: their private key stays there
MODEL = "breast_cancer_lr"


def chapter(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


# The people of the story, each with an identity file on their own machine (an Ed25519 signing key they made, and
# the broker credentials the admin handed them).
PEOPLE = {"lead": ["admin"], "lena": ["admin"], "dana": ["data-scientist"], "bo": ["data-scientist", "approver"],
          "ana": ["approver"], "olga": ["operator"], "etl": ["data-publisher"], "shop": ["data-publisher"],
          "mallory": ["viewer"]}


def identity(name: str) -> Path:
    return PEOPLE_HOMES / name / "identity.json"


def enrol_everyone() -> None:
    """Both sides, as people and their admins would: each makes their key at home (keygen), the admin enrols it
    from the enrolment request (public key and proof), the person takes the broker credentials back. lead and
    lena are the first two admins; every approver or admin after them needs both their endorsements."""
    for name, roles in PEOPLE.items():
        request = mlbus("people", "keygen", name, "--out", str(identity(name)), show=False, echo=False).strip()
        roles_args = [arg for role in roles for arg in ("--role", role)]
        endorsements = []
        if set(roles) & {"approver", "admin"} and name not in ("lead", "lena"):
            mlbus("people", "add", name, *roles_args, "--enrolment", request, show=False, echo=False, refused=True)
            for admin in ("lead", "lena"):
                endorsements += ["--endorsement", mlbus("people", "endorse", str(Path(request).with_name(
                    f"{name}.grant.json")), person=admin, show=False, echo=False).strip()]
        credentials = mlbus("people", "add", name, *roles_args, "--enrolment", request, *endorsements,
                            show=False, echo=False).strip()
        mlbus("people", "credentials", credentials, "--identity", str(identity(name)), show=False, echo=False)
        Path(credentials).unlink()
    print("$ mlbus people keygen NAME --out ~/.config/mlbus/identity.json     (each person, on their machine)")
    print("$ mlbus people add NAME --role ROLE ... --enrolment NAME.enrolment.json   (the admin: "
          f"{', '.join(PEOPLE)})")
    print("  approvers past the first two admins: refused until two admins endorse the grant it drafts:")
    print("$ MLBUS_IDENTITY=…/lead.json mlbus people endorse ana.grant.json   (and lena; then add … --endorsement …)")
    print("$ mlbus people credentials NAME.credentials.json                     (each person)")


def no_private_key_on_the_admins_machine() -> None:
    """The admin's machine (DEMO_VAR) holds no person's private key: every file there is searched for each."""
    keys = {name: json.loads(identity(name).read_text())["private_key"] for name in PEOPLE}
    for path in DEMO_VAR.rglob("*"):
        if path.is_file() and path.stat().st_size < 10 << 20:
            text = path.read_bytes()
            found = [name for name, key in keys.items() if key.encode() in text]
            if found:
                sys.exit(f"demo: {path} on the admin's machine holds the private key of {', '.join(found)}")
    print(f"checked: no file under {DEMO_VAR} (the admin's machine) holds any person's private key")


def mlbus(*args: str, stdin: str | None = None, show: bool = True, echo: bool = True, person: str | None = None,
          refused: bool = False) -> str:
    """Run the real `mlbus` command the way a user would, echoing it (not when it only polls); as `person`
    (MLBUS_IDENTITY=their identity file), else as the local broker's admin. refused: the command must fail."""
    if echo:
        who = f"MLBUS_IDENTITY=…/{person}.json " if person else ""
        print(f"$ {who}mlbus {' '.join(args)}", flush=True)
    env = {**os.environ, "MLBUS_IDENTITY": str(identity(person))} if person else os.environ
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "mlbus"), *args], input=stdin, text=True,
                            capture_output=True, env=env)
    if refused:
        if result.returncode == 0:
            sys.exit(f"demo: `mlbus {' '.join(args)}` should have been refused")
        print(f"refused: {result.stderr.strip().splitlines()[-1]}")
        return result.stderr
    if result.returncode != 0:
        sys.exit(f"demo: `mlbus {' '.join(args)}` failed ({result.returncode}):\n{result.stderr}")
    if show:
        print(result.stdout.rstrip() or result.stderr.rstrip())
    return result.stdout


def wait_for(what: str, probe, timeout_s: float = 180.0):
    """Poll until probe() answers. timeout_s is how long the platform may go without doing anything (no service
    committed a new input: bus_progress) before the demo gives up; while it works, a busy machine only makes the
    wait longer, up to four times timeout_s, and every 30 s the demo says what it is still waiting for."""
    started = last_change = last_said = time.monotonic()
    progress = bus_progress()
    while True:
        found = probe()
        if found:
            return found
        now = time.monotonic()
        if now - last_change >= 10 or now - last_said >= 30:
            moved = bus_progress()
            if moved != progress:
                progress, last_change = moved, now
        if now - last_change > timeout_s or now - started > 4 * timeout_s:
            why = (f"the platform did nothing for {now - last_change:.0f}s" if now - last_change > timeout_s
                   else f"still working after {now - started:.0f}s")
            sys.exit(f"demo: no {what} ({why}); see `mlbus status` and the logs in {DEMO_VAR / 'log'}")
        if now - last_said >= 30:
            print(f"  … still waiting for {what} ({now - started:.0f}s; the services are "
                  f"{'still working' if now - last_change < 15 else 'idle'})", flush=True)
            last_said = now
        time.sleep(0.5)


@functools.lru_cache(maxsize=1)
def _admin():
    from confluent_kafka.admin import AdminClient

    from services.bus.context import Bus
    from services.bus.kafka import admin_config

    bus = Bus.from_env(principal="admin")
    return bus.settings.connection.namespace, AdminClient(admin_config(bus.settings))


def bus_progress() -> int:
    """How many inputs the platform's services have committed in all (the sum of their groups' committed
    offsets): it grows while any service works, whatever the demo is waiting for."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    namespace, admin = _admin()
    try:
        groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(timeout=15).valid
                  if g.group_id.startswith(namespace + "mlbus.")]
        total = 0
        for group in groups:
            answer = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)
            for future in answer.values():
                total += sum(max(0, p.offset) for p in future.result(timeout=15).topic_partitions)
        return total
    except KafkaException:
        return -1                      # the broker did not answer this time: no progress seen


def data_to_model_story() -> None:
    from services.cli.sample_data import breast_cancer

    chapter("1. People: each makes their own signing key; the admin enrols it with roles and broker credentials")
    enrol_everyone()
    mlbus("people", "list")

    chapter("2. A data contract, a model spec (signed by dana) and a promotion policy (signed by lead, an admin)")
    print("schemas/datasets/breast_cancer.avsc: 32 columns with types, ranges, allowed values, missing limits, key id")
    mlbus("models", "define", str(ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"), person="dana")
    print("scripts/examples/breast_cancer_policy.yaml: roc_auc ≥ 0.95, recall ≥ 0.9, approvers ana and bo, four-eyes")
    mlbus("models", "policy", str(ROOT / "scripts" / "examples" / "breast_cancer_policy.yaml"), person="lead")
    mlbus("models", "policy", str(ROOT / "scripts" / "examples" / "breast_cancer_policy.yaml"), person="dana",
          refused=True)

    chapter("3. New data: a good batch and a bad one (repeated ids, a negative radius, a text value)")
    data_dir = DEMO_VAR / "incoming"
    data_dir.mkdir(parents=True, exist_ok=True)
    good = breast_cancer(rows=400, seed=1)
    good.to_csv(data_dir / "monday.csv", index=False)
    bad = breast_cancer(rows=150, seed=2, offset=5000)
    bad.loc[10:14, "id"] = bad.loc[0:4, "id"].to_numpy()
    bad.loc[20, "mean_radius"] = -3.0
    bad["mean_texture"] = bad["mean_texture"].astype(object)
    bad.loc[30, "mean_texture"] = "n/a?"
    bad.to_csv(data_dir / "tuesday.csv", index=False)
    good_id = mlbus("data", "publish", "breast_cancer", str(data_dir / "monday.csv"), show=False, person="etl").strip()
    bad_id = mlbus("data", "publish", "breast_cancer", str(data_dir / "tuesday.csv"), show=False, person="etl").strip()
    print(f"good batch {good_id}\nbad batch  {bad_id}")

    chapter("4. The validator's verdicts (data.validated)")
    wait_for("validations", lambda: len(json.loads(mlbus("data", "validations", "--json", show=False, echo=False))) >= 2)
    mlbus("data", "validations")
    print()
    report = mlbus("data", "report", bad_id, show=False).splitlines()
    failures = [line for line in report if not line.startswith("  warning")]
    print("\n".join(failures[:8]), f"\n... and the profile of all {len(report) - 9} columns: mlbus data report {bad_id[:8]}")

    chapter("5. The trainer trained a model version on the good batch only (models.trained, training.runs)")
    runs = wait_for("trained model", lambda: [r for r in json.loads(mlbus("runs", "list", "--json", show=False,
                                                                          echo=False)) if r["chosen"]])
    mlbus("runs", "list")
    chosen = runs[0]
    print(f"\nversion {chosen['version']}: run {chosen['run_id']}, params {chosen['hyperparameters_json']}, "
          f"roc_auc {chosen['metrics']['roc_auc']:.4f}, trained on {[b['batch_id'][:8] for b in chosen['batches']]}, "
          f"artifact sha256 {chosen['artifact_sha256'][:16]}…, code {chosen['code_version']} "
          f"@ {(chosen['git_commit'] or 'no git')[:10]}, scikit-learn {chosen['environment']['scikit-learn']}")

    chapter("6. Reproducibility: re-run the recorded training from its lineage and compare")
    mlbus("train", "--reproduce", chosen["run_id"], "--wait", "180", person="dana")


@functools.cache
def app_bus():
    """The shop's application connects as the `app` principal: it may send requests, outcomes and KPIs."""
    from services.bus import Bus

    return Bus.from_env(principal="app")


def send_traffic(bus, count: int, prefix: str, with_outcomes: bool = False, scale: float = 1.0) -> list[str]:
    """A shop sends scoring requests (rows of the sample data) and, later, what really happened."""
    from datetime import datetime, timezone

    from services.bus import Event, Publisher, derive_id
    from services.cli.sample_data import breast_cancer

    rows = breast_cancer(rows=min(count, 569), seed=hash(prefix) % 1000)
    features = [c for c in rows.columns if c not in ("id", "diagnosis")]
    publisher = Publisher(app_bus(), "shop-app")
    ids = []
    for i in range(count):
        row = rows.iloc[i % len(rows)]
        request_id = f"{prefix}-{i:05d}"
        publisher.publish(Event("mlbus.InferenceRequest", key=f"patient-{i}", id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": f"patient-{i}", "model": MODEL,
            "features": {f: float(row[f]) * scale for f in features}, "categories": {},
            "sent_at": datetime.now(timezone.utc)}))
        if with_outcomes:
            publisher.publish(Event("mlbus.Outcome", key=f"patient-{i}", id=derive_id("outcome", request_id), value={
                "outcome_id": derive_id("outcome", request_id), "request_id": request_id,
                "entity_id": f"patient-{i}", "model": MODEL, "label": str(row["diagnosis"]), "value": None,
                "observed_at": datetime.now(timezone.utc)}))
        ids.append(request_id)
    publisher.flush()
    return ids


def forge_approval(bus, claimed: str) -> None:
    """An approval written with the broker admin's credentials, naming a person but signed by no one."""
    from services.bus import Event, Publisher
    from services.bus.envelope import new_id

    value = {"approval_id": new_id(), "model": MODEL, "version": 1, "decision": "approve", "actor": claimed,
             "reason": "forged", "submitted_at": datetime.now(timezone.utc)}
    publisher = Publisher(bus, "cli:admin")
    publisher.publish(Event("mlbus.ApprovalSubmitted", value, key=MODEL, id=value["approval_id"]))
    publisher.flush()
    refusal = wait_for("the registry's answer", lambda: next(
        (d for d in json.loads(mlbus("models", "show", f"{MODEL}@1", "--json", show=False, echo=False))[0]["decisions"]
         if d["kind"] == "approval-refused" and "signature" in d["reason"]), None))
    print(f"registry: {refusal['kind']} — {refusal['reason']}")


def deployment_phases(version: int) -> list[str]:
    history = json.loads(mlbus("deployments", MODEL, "--json", show=False, echo=False)).get(MODEL, {}).get("history", [])
    return [d["phase"] for d in history if d["version"] == version]


def governed_serving_story() -> None:
    from services.bus import Bus
    from services.bus.replay import read_topics

    bus = Bus.from_env(principal="admin")
    chapter("7. Governance: version 1 waits for a person the policy names; only a signed approval counts")
    mlbus("models", "list")
    print("mallory is a viewer: the broker does not let her write an approval at all")
    mlbus("approve", MODEL, "1", "--reason", "ship it", person="mallory", refused=True)
    print("the broker's admin writes an approval claiming to be ana's: transport rights are not a signature")
    forge_approval(bus, "ana")
    mlbus("approve", MODEL, "1", "--reason", "holdout and CV metrics reviewed", person="ana")
    wait_for("the approval's outcome", lambda: "approved" in mlbus("models", "list", show=False, echo=False))
    mlbus("models", "show", f"{MODEL}@1")

    chapter("8. The approved version is deployed by itself (nothing served before: replace) and answers traffic")
    wait_for("deployment of v1", lambda: "completed" in deployment_phases(1))
    ids = send_traffic(bus, 300, "monday")
    answered = wait_for("predictions", lambda: (found := [r.value for r in read_topics(bus, ["inference.predictions"])
                                                          if r.value["request_id"] in set(ids)]) and
                        len(found) >= 300 and found)
    labels = {}
    for p in answered:
        labels[p["label"]] = labels.get(p["label"], 0) + 1
    print(f"300 requests → {len(answered)} predictions, all by v{sorted({p['version'] for p in answered})}, "
          f"labels {labels}, median latency {sorted(p['latency_ms'] for p in answered)[150]:.1f} ms")

    chapter("9. Version 2: requested by bo, so bo may not approve it (four-eyes); ana does; it goes out as a canary")
    mlbus("train", MODEL, "--wait", "180", person="bo")
    mlbus("approve", MODEL, "2", "--reason", "my own model looks great", person="bo")
    mlbus("approve", MODEL, "2", "--reason", "as good as v1 on the holdout", person="ana")
    wait_for("the canary to start", lambda: "started" in deployment_phases(2))
    rounds = iter(range(10_000))
    wait_for("the canary to finish", lambda: send_traffic(bus, 200, f"tuesday{next(rounds)}", with_outcomes=True)
             and {"completed", "rolled-back"} & set(deployment_phases(2)), timeout_s=240)
    mlbus("deployments", MODEL)
    show = mlbus("models", "show", f"{MODEL}@2", show=False).splitlines()
    print("\n".join(line for line in show if "  20" in line or line.startswith("v2")))


BEFORE_RETRAIN = None          # a moment before the drift-triggered retraining, for the replay chapter


def monitoring_story() -> None:
    from services.bus import Bus
    from services.bus.replay import read_topics

    bus = Bus.from_env(principal="admin")
    global BEFORE_RETRAIN
    BEFORE_RETRAIN = datetime.now(timezone.utc)
    chapter("10. Drift: the shop's patients change (every measurement 40 % larger); the drift-watcher notices")
    print("spec monitoring: windows of 200 requests, KS per feature against v2's training sample, "
          "3 drifted windows in a row on the champion → retrain")
    rounds = iter(range(10_000))
    request = wait_for("a drift-triggered training request", lambda: send_traffic(
        bus, 200, f"wednesday{next(rounds)}", with_outcomes=True, scale=1.4) and next(
        (r.value for r in read_topics(bus, ["training.requests"]) if r.value["reason"] == "drift"), None), 300)
    status = mlbus("drift", "status", MODEL, "--windows", "4", show=False).splitlines()
    for line in status[:status.index(next(line for line in status if "per feature" in line)) + 8]:
        print(line)
    print("  ... (one row per feature, then the predictions)")
    alerts = [r.value for r in read_topics(bus, ["alerts"]) if r.value["kind"] in ("drift", "feature-drift")]
    print(f"{len(alerts)} drift alerts, e.g. [{alerts[-1]['severity']}] {alerts[-1]['message'][:150]}")
    evidence = json.loads(request["evidence_json"])
    print(f"training request {request['request_id'][:8]}… by {request['requested_by']}: reason drift, evidence "
          f"{len(evidence['report_ids'])} drift reports of v{evidence['version']}")

    chapter("11. The retraining: the trainer trains v3, ana approves it (the drift-watcher asked, so four-eyes allows "
            "her), it goes out as a canary")
    print("(the demo's data has not changed, so v3 learns what v2 knew; in production a new batch carries the "
          "new distribution)")
    wait_for("v3", lambda: any(r.value["version"] == 3 for r in read_topics(bus, ["models.trained"])), 240)
    mlbus("approve", MODEL, "3", "--reason", "retrained after drift; metrics as before", person="ana")
    wait_for("the canary to start", lambda: "started" in deployment_phases(3))
    wait_for("the canary to finish", lambda: send_traffic(bus, 200, f"thursday{next(rounds)}", with_outcomes=True,
                                                          scale=1.4)
             and {"completed", "rolled-back"} & set(deployment_phases(3)), timeout_s=240)
    mlbus("deployments", MODEL)
    kpi_story(bus)


def kpi_story(bus) -> None:
    """The shop reports conversion per time window; here it is simulated along the real timeline: no effect
    of v2, +5 % for v3 (as the canary, and after it took over)."""
    import numpy as np
    from datetime import timedelta

    from services.bus import Event, Publisher, derive_id

    chapter("12. Business KPIs against the deployment timeline (the shop's conversion, simulated: v3 converts 5 % "
            "better)")
    history = json.loads(mlbus("deployments", MODEL, "--json", show=False, echo=False))[MODEL]["history"]
    times = {(d["version"], d["phase"]): parse(d["changed_at"]) for d in history}
    v1, v3_canary, v3 = times[(1, "completed")], times[(3, "started")], times.get((3, "completed"))
    end = parse(json.loads(mlbus("deployments", MODEL, "--json", show=False, echo=False))[MODEL]["history"][-1][
        "changed_at"]) + timedelta(seconds=30)
    rng, publisher, count = np.random.default_rng(7), Publisher(app_bus(), "shop-app"), 0
    for start, stop, variant, rate in [(v1, v3 or end, None, 0.100), (v3 or end, end, None, 0.105),
                                       (v3_canary, v3 or end, "champion", 0.100),
                                       (v3_canary, v3 or end, "canary", 0.105)]:
        for moment in [start + (stop - start) * (i + 0.5) / 40 for i in range(40)]:
            dims = {"model": MODEL, **({"variant": variant} if variant else {})}
            kpi_id = derive_id("demo-kpi", moment.isoformat(), variant)
            publisher.publish(Event("mlbus.KpiObserved", key="conversion", id=kpi_id, value={
                "kpi_id": kpi_id, "name": "conversion", "value": float(rng.normal(rate, 0.006)),
                "window_start": moment - timedelta(seconds=1), "window_end": moment, "dimensions": dims,
                "source": "shop-simulation", "observed_at": moment}))
            count += 1
    publisher.flush()
    print(f"{count} simulated conversion observations published; one more by hand:")
    mlbus("kpi", "publish", "conversion", "0.104", "--dim", f"model={MODEL}", "--at", end.isoformat(), person="shop")
    mlbus("kpi", "report", MODEL, "--kpi", "conversion")
    print("What each version cost — to train (every grid point) and to serve — beside the KPI change it brought:")
    mlbus("models", "cost", MODEL)


def parse(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)


def own_service_story() -> None:
    from services.bus import Bus, Event, PerRecord, RuntimeConfig, ServiceRuntime, derive_id
    from services.bus.logs import configure_logging
    from services.bus.publish import Publisher
    from services.bus.topics import consumer_lag

    bus = Bus.from_env(principal="admin")
    chapter("13. A service of your own, ten lines on the mlbus runtime: alert on confident malignant predictions")
    configure_logging("demo", "console", "warning")      # show the runtime's dead-letter warnings only

    def confident_malignant(message):
        p = message.value
        if p["served"] and p["probabilities"].get("malignant", 0.0) > 0.99:
            yield Event(record="mlbus.Alert", key=p["model"], id=derive_id(message.envelope.id, "triage"), value={
                "alert_id": derive_id(message.envelope.id, "triage"), "kind": "triage", "severity": "info",
                "model": p["model"], "version": p["version"], "message": f"{p['entity_id']}: see a doctor first",
                "evidence_json": json.dumps({"request_id": p["request_id"]}), "cause_id": p["prediction_id"],
                "raised_at": p["predicted_at"]})

    service = ServiceRuntime(app_bus(), "triage", PerRecord(confident_malignant),
                             RuntimeConfig(topics=["inference.predictions"]))
    worker = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    worker.start()
    try:
        wait_for("the triage service to catch up",
                 lambda: sum(consumer_lag(bus, service.group, ["inference.predictions"]).values()) == 0)
    finally:
        service.stop()
        worker.join(timeout=30)
    alerts = [json.loads(line) for line in mlbus("consume", "alerts", "--from-beginning", "--timeout", "3",
                                                  show=False).splitlines()]
    triage = [a for a in alerts if a["value"]["kind"] == "triage"]
    print(f"{len(triage)} triage alerts, e.g. {triage[0]['value']['message'] if triage else '-'} "
          f"(caused by {triage[0]['headers']['causationid'][:8] if triage else '-'}…, "
          f"trace {triage[0]['headers']['traceparent'][3:19] if triage else '-'}…)")

    chapter("14. Bad input: random bytes and truncated Avro go to the dead-letter topic, bytes intact; nothing stops")
    publisher = Publisher(app_bus(), "demo")
    good = bus.schemas.encode("mlbus.InferenceRequest", {"request_id": "x", "entity_id": "x", "model": MODEL,
                                                         "features": {}, "categories": {}, "sent_at": 0})
    publisher.produce("inference.requests", b"broken-1", os.urandom(16), [])
    publisher.produce("inference.requests", b"broken-2", good[:-6], [])
    publisher.flush()
    for line in mlbus("consume", "inference.requests.dlq", "--from-beginning", "--max", "2", show=False).splitlines():
        record = json.loads(line)
        headers = record["headers"]
        print(f"  key={record['key']}  {len(record['value_base64'])} base64 chars  "
              f"from {headers['dlq.original.topic']}@{headers['dlq.original.offset']} by {headers['dlq.service']}  "
              f"{headers['dlq.error.class']}: {headers['dlq.error.message'][:60]}")


def audit_story() -> None:
    from services.bus import Bus
    from services.bus.replay import read_topics
    from services.adapters import auditor_lag, newest_cosigned

    bus = Bus.from_env(principal="admin")
    chapter("16. Governance from audit.log alone: every event, hash-chained, replayable")
    wait_for("the auditor to catch up", lambda: sum((lag := auditor_lag(bus)).values()) <= 3 * len(lag))
    timeline = mlbus("audit", "timeline", MODEL, show=False).splitlines()
    print("\n".join(timeline[:12] + ["  ..."] + timeline[-8:]))
    served = [r.value for r in read_topics(bus, ["inference.predictions"]) if r.value["served"] and r.value["version"]]
    chapter("17. Explain one prediction: who served it, which version, trained on what, approved by whom")
    mlbus("audit", "explain", served[len(served) // 2]["request_id"])
    lines = mlbus("audit", "explain", *[p["request_id"] for p in served], "--summary", show=False,
                  echo=False).splitlines()
    print(f"$ mlbus audit explain <all {len(served)} served request ids> --summary")
    print("\n".join(lines[:3] + ["  ..."]))
    print(f"every one of the {len(served)} served predictions explained: {len(lines)} answers "
          f"({sum('approved by ana' in line for line in lines)} approved by ana)")
    chapter("17b. Why: the prediction reproduced from the archived artifact and features, and its attributions")
    mlbus("audit", "explain", served[len(served) // 2]["request_id"], "--why")
    claim = next(p for p in served if p["model"] == CLAIMS)
    mlbus("audit", "explain", claim["request_id"], "--why")
    print("Every served prediction of the demo, reproduced from the record (exit 1 if any differs):")
    mlbus("audit", "reproduce")
    chapter("18. Replay: the state at a moment before the drift-triggered retraining, from audit.log only")
    mlbus("audit", "replay", "--until", BEFORE_RETRAIN.isoformat())
    chapter("19. Rebuild the registry's database from audit.log, and verify the chain and every signed tree head")
    mlbus("audit", "rebuild-registry")
    wait_for("the witness to co-sign the newest signed head", lambda: newest_cosigned(bus))
    mlbus("audit", "verify")
    print(f"signed tree heads kept outside Kafka, one JSON line each: {DEMO_VAR / 'audit-anchor'}")
    chapter("20. Prove one prediction to a regulator: an inclusion proof, checked offline with the public key")
    chosen = served[len(served) // 2]
    (DEMO_VAR / "auditor.pem").write_text(mlbus("audit", "key", show=False, echo=False))
    (DEMO_VAR / "witness.pem").write_text(mlbus("audit", "key", "--witness", show=False, echo=False))
    mlbus("audit", "prove", chosen["request_id"], "--out", str(DEMO_VAR / "proof.json"))
    mlbus("audit", "check-proof", str(DEMO_VAR / "proof.json"), "--key", str(DEMO_VAR / "auditor.pem"),
          "--witness-key", str(DEMO_VAR / "witness.pem"))
    chapter("21. Erase a customer's data (GDPR Art. 17): their features become unreadable, the log still verifies")
    mlbus("audit", "forget", chosen["entity_id"], "--reason", "GDPR request 7", person="lead")
    wait_for("the auditor to delete the data key", lambda: "features: ERASED" in mlbus(
        "audit", "explain", chosen["request_id"], show=False, echo=False))
    mlbus("audit", "explain", chosen["request_id"])
    wait_for("the witness to co-sign the newest signed head", lambda: newest_cosigned(bus))
    mlbus("audit", "verify")
    mlbus("audit", "check-proof", str(DEMO_VAR / "proof.json"), "--key", str(DEMO_VAR / "auditor.pem"),
          "--witness-key", str(DEMO_VAR / "witness.pem"))


CLAIMS, CLAIMS_LR, CLAIMS_ENSEMBLE = "claims_fraud", "claims_fraud_lr", "claims_fraud_ensemble"
CLAIMS_POLICY = "model: {}\nmetric: roc_auc\nthresholds: {{roc_auc: 0.65}}\nhuman_approval: true\napprovers: [ana]\n"


def registered(model: str, version: int) -> dict | None:
    """`models show MODEL@VERSION` once the registry has registered it, else None."""
    shown = json.loads(mlbus("models", "list", "--json", show=False, echo=False))
    if not any(m["model"] == model and m["version"] == version for m in shown):
        return None
    [entry] = json.loads(mlbus("models", "show", f"{model}@{version}", "--json", show=False, echo=False))
    return entry if any(d["kind"] == "registered" for d in entry["decisions"]) else None


def serving(model: str) -> bool:
    return "completed" in [d["phase"] for d in json.loads(mlbus("deployments", model, "--json", show=False,
                                                                echo=False)).get(model, {}).get("history", [])]


def send_claims(model: str, rows: list[dict]) -> None:
    from datetime import datetime, timezone

    from services.bus import Event, Publisher, derive_id
    publisher = Publisher(app_bus(), "claims-app")
    for row in rows:
        request_id = f"{model}-claim-{row['id']}"
        publisher.publish(Event("mlbus.InferenceRequest", key=request_id, id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": f"claim-{row['id']}", "model": model,
            "features": {n: float(row[n]) for n in ("age", "tenure_months", "claim_amount", "prior_claims")},
            "categories": {c: str(row[c]) for c in ("region", "channel", "vehicle")},
            "sent_at": datetime.now(timezone.utc)}))
    publisher.flush()


def categories_story() -> None:
    from services.cli.sample_data import insurance_claims

    chapter("15. Categories: a claims-fraud model on region, sales channel and vehicle; served online, scored offline")
    incoming = DEMO_VAR / "incoming"
    insurance_claims(rows=1500, seed=1).to_csv(incoming / "claims.csv", index=False)
    for model in (CLAIMS, CLAIMS_LR, CLAIMS_ENSEMBLE):
        (incoming / f"{model}_policy.yaml").write_text(CLAIMS_POLICY.format(model))
        mlbus("models", "policy", str(incoming / f"{model}_policy.yaml"), person="lead", show=False)
    for spec in ("insurance_claims_gb", "insurance_claims_lr", "insurance_claims_ensemble"):
        mlbus("models", "define", str(ROOT / "scripts" / "examples" / f"{spec}.yaml"), person="dana")
    mlbus("data", "publish", "insurance_claims", str(incoming / "claims.csv"), person="etl")
    trained = wait_for("the claims model, registered", lambda: registered(CLAIMS, 1))["trained"]
    print(f"v1: {trained['estimator']} on {', '.join(trained['features'])}; categorical: "
          f"{', '.join(trained['categorical_features'])} (one-hot inside the saved pipeline); "
          f"roc_auc {trained['metrics']['roc_auc']:.3f}")
    mlbus("approve", CLAIMS, "1", "--reason", "fraud model reviewed", person="ana")
    wait_for("the claims model to serve", lambda: serving(CLAIMS))
    today = insurance_claims(rows=300, seed=8, offset=100_000)
    send_claims(CLAIMS, today.to_dict("records"))
    print("300 claims sent online, with their categories (numbers in `features`, categories in `categories`)")
    today.to_csv(incoming / "claims_today.csv", index=False)
    scoring = json.loads(mlbus("score", CLAIMS, "--batch", str(incoming / "claims_today.csv"), person="dana"))
    import pandas as pd
    from services.adapters import local_path
    offline = pd.read_parquet(local_path(scoring["output_uri"]))
    print(f"the same 300 claims scored offline: {int((offline['label'] == 'yes').sum())} flagged as fraud; "
          f"first rows:\n{offline.head(3).to_string(index=False)}")
    wait_for("the auditor to record the batch scoring", lambda: "batch scoring" in mlbus(
        "audit", "explain", scoring["scoring_id"], show=False, echo=False))
    mlbus("audit", "explain", scoring["scoring_id"])
    print("The version's model card, built only from audit.log (also --format html|json, and --until a moment):")
    mlbus("models", "card", f"{CLAIMS}@1")


def ensemble_story() -> None:
    from services.cli.sample_data import insurance_claims

    chapter("15b. An ensemble: the gradient-boosting and the linear claims models, soft-voted, deployed as one version")
    wait_for("the linear claims model, registered", lambda: registered(CLAIMS_LR, 1))
    mlbus("approve", CLAIMS_LR, "1", "--reason", "linear fraud model reviewed", person="ana")
    print("Both members are champions now, so the trainer builds the ensemble from them (members pinned by version "
          "and artifact sha256); it needs its own approval:")
    entry = wait_for("the ensemble, registered", lambda: registered(CLAIMS_ENSEMBLE, 1), timeout_s=240)
    mlbus("models", "show", f"{CLAIMS_ENSEMBLE}@1")
    mlbus("approve", CLAIMS_ENSEMBLE, "1", "--reason", "members and holdout reviewed", person="ana")
    wait_for("the ensemble to serve", lambda: serving(CLAIMS_ENSEMBLE))
    rows = insurance_claims(rows=50, seed=9, offset=200_000).to_dict("records")
    send_claims(CLAIMS_ENSEMBLE, rows)
    request_id = f"{CLAIMS_ENSEMBLE}-claim-{rows[0]['id']}"
    print(f"50 claims sent to the ensemble (roc_auc {entry['trained']['metrics']['roc_auc']:.3f} on its holdout); "
          "explain names each member, its artifact hash and what it answered:")
    wait_for("the auditor to record the ensemble's answer", lambda: "member " in mlbus(
        "audit", "explain", request_id, show=False, echo=False))
    mlbus("audit", "explain", request_id)

SHOP_MODEL = "shop_returns"
SHOP_POLICY = "model: shop_returns\nmetric: roc_auc\nthresholds: {roc_auc: 0.55}\nhuman_approval: false\n"


def feature_store_story() -> None:
    from services.bus import Event, Publisher, derive_id
    from services.cli.sample_data import shop_purchases

    chapter("15d. A feature store: a view over the shop's purchases, a model trained on it without leakage, a request "
            "answered with looked-up features")
    incoming = DEMO_VAR / "incoming"
    day_ms = 86_400_000
    today_ms = int(datetime.now(timezone.utc).timestamp() * 1000) // day_ms * day_ms
    # whole days from today's UTC midnight: the same purchases against the day windows whatever the hour of the run
    # (from now - 17 d, the hour moved purchases across the windows; the story test's fix at 155a6c3)
    events, labels = shop_purchases(customers=120, days=14, seed=2, start_ms=today_ms - 17 * day_ms)
    shop = Publisher(app_bus(), "shop-app")
    for value in events:
        shop.publish(Event("mlbus.BusinessEvent", value, key=value["entity"], id=value["event_id"]))
    shop.flush()
    customer = events[-1]["entity"]                 # someone who bought lately
    print(f"the shop published {len(events):,} purchases on business.events (17 days of them)")
    mlbus("features", "define", str(ROOT / "scripts" / "examples" / "shop_views.yaml"), person="dana")
    wait_for("the featurizer to compute the view", lambda: json.loads(mlbus(
        "features", "history", "shop", customer, "--json", show=False, echo=False))["values"])
    mlbus("features", "list")
    mlbus("features", "get", "shop", customer)
    (incoming / "shop_policy.yaml").write_text(SHOP_POLICY)
    mlbus("models", "policy", str(incoming / "shop_policy.yaml"), person="lead", show=False)
    mlbus("models", "define", str(ROOT / "scripts" / "examples" / "shop_returns_lr.yaml"), person="dana")
    labels.to_csv(incoming / "shop_returns.csv", index=False)
    print(f"{len(labels):,} label rows (customer, moment, bought again within 3 days?): each row's features are "
          "looked up as they stood strictly before its moment")
    mlbus("data", "publish", "shop_returns", str(incoming / "shop_returns.csv"), person="etl")
    trained = wait_for("the shop_returns model, registered", lambda: registered(SHOP_MODEL, 1), timeout_s=240)["trained"]
    views = json.loads(trained["feature_views_json"])
    print(f"v1 trained on {', '.join(views['columns'])} (view versions {views['views']}); offline snapshot "
          f"{trained['features_snapshot_sha256'][:16]}…; roc_auc {trained['metrics']['roc_auc']:.3f}")
    wait_for("shop_returns to serve", lambda: serving(SHOP_MODEL), timeout_s=240)
    request_id = "shop-returns-request-1"
    app = Publisher(app_bus(), "shop-app")
    app.publish(Event("mlbus.InferenceRequest", key=customer, id=derive_id(request_id), value={
        "request_id": request_id, "entity_id": customer, "model": SHOP_MODEL, "features": {}, "categories": {},
        "sent_at": datetime.now(timezone.utc)}))
    app.flush()
    print(f"a request for {customer} that carries no features: the scorer looks them up in its copy of the online "
          "store; explain shows each value, its view version and its age:")
    wait_for("the auditor to record the answer", lambda: "shop" in mlbus(
        "audit", "explain", request_id, show=False, echo=False))
    mlbus("audit", "explain", request_id)


LOANS = "loan_approval"


def fairness_story() -> None:
    from services.cli.sample_data import loan_applications

    chapter("15c. Fairness: loan applications with a planted bias against one group are rejected; fair ones pass")
    incoming = DEMO_VAR / "incoming"
    mlbus("models", "policy", str(ROOT / "scripts" / "examples" / "loan_applications_policy.yaml"), person="lead")
    mlbus("models", "define", str(ROOT / "scripts" / "examples" / "loan_applications_lr.yaml"), person="dana")
    loan_applications(3000, seed=1, bias=1.5).to_csv(incoming / "loans_biased.csv", index=False)
    loan_applications(3000, seed=2).to_csv(incoming / "loans.csv", index=False)
    mlbus("data", "publish", "loan_applications", str(incoming / "loans_biased.csv"), person="etl")
    wait_for("v1 judged", lambda: (entry := registered(LOANS, 1)) and len(entry["decisions"]) > 1)
    mlbus("models", "show", f"{LOANS}@1")
    mlbus("data", "publish", "loan_applications", str(incoming / "loans.csv"), person="etl")
    wait_for("v2 judged", lambda: (entry := registered(LOANS, 2)) and len(entry["decisions"]) > 1)
    mlbus("models", "show", f"{LOANS}@2")


def console_story() -> None:
    import urllib.request
    chapter("22. The console: the same record on a web page, where people look, approve, deploy and roll back")
    url = f"http://127.0.0.1:{os.environ['MLBUS_CONSOLE_PORT']}"

    def answers() -> dict | None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    seen = wait_for("answer from the console", answers, 60)
    print(f"{url}/ follows the topics live ({seen['changes']} events folded so far): overview, models with their "
          f"lineage, experiments, approvals, deployments, monitoring, KPIs, audit. Log in by choosing an identity "
          f"file, e.g. {identity('ana')} (ana, an approver): the page signs a challenge with it in the browser; "
          f"the key never leaves it.")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the broker running and print how to use it")
    args = parser.parse_args()
    os.environ["MLBUS_VAR"] = str(DEMO_VAR)
    os.environ.pop("MLBUS_BOOTSTRAP", None)
    os.environ.setdefault("MLBUS_LOG_LEVEL", "warning")
    os.environ.setdefault("MLBUS_CANARY_INTERVAL_S", "3")      # canary steps of 3 s, so the story fits a minute
    os.environ.setdefault("MLBUS_AUDIT_HEAD_INTERVAL_S", "2")  # a signed tree head within seconds of a record
    os.environ.setdefault("MLBUS_CONSOLE_PORT", "8080")         # the web console that `mlbus up` starts
    subprocess.run([sys.executable, str(ROOT / "scripts" / "kafka"), "stop", "--dir", str(DEMO_VAR / "kafka")],
                   stdout=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", str(DEMO_VAR), str(PEOPLE_HOMES)], check=True)

    chapter("0. Start: a local Apache Kafka broker (KRaft) from Maven Central jars, topics, the services")
    mlbus("up")
    started = time.monotonic()
    finished = False
    try:
        data_to_model_story()
        governed_serving_story()
        monitoring_story()
        own_service_story()
        categories_story()
        ensemble_story()
        fairness_story()
        feature_store_story()
        audit_story()
        console_story()
        mlbus("status")
        no_private_key_on_the_admins_machine()
        finished = True
    finally:
        if not finished or not args.keep:    # a failed run stops what it started, --keep or not
            chapter("Stop what the demo started" + ("" if finished else " (the demo failed: nothing is left running)"))
            subprocess.run([str(ROOT / ".venv" / "bin" / "mlbus"), "down"], env=os.environ)
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    if args.keep:
        print(f"\nThe console: http://127.0.0.1:{os.environ['MLBUS_CONSOLE_PORT']}/ — log in as ana (an approver) with "
              f"the identity file {identity('ana')}, or as olga (an operator), bo, dana, lead … (files in "
              f"{PEOPLE_HOMES}: each person's own machine)")
        print(f"\nEverything is still running. In this shell:\n  export MLBUS_VAR={DEMO_VAR}\n"
              "  .venv/bin/mlbus status\n  .venv/bin/mlbus consume inference.predictions --from-beginning\n"
              "and `.venv/bin/mlbus down` when done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
