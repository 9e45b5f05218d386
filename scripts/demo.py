"""The mlbus story, told on a real local Kafka broker. Run through scripts/demo (it sets up first).

The story so far: a data contract and a model spec; a good and a bad batch published; the validator
rejecting the bad one with reasons and profiling the good one; the trainer training a model version with
full lineage; reproducing that run; then the bus itself — a service of your own on the mlbus runtime, and
bad input going to a dead-letter topic with its bytes intact. Later chapters (approvals, deployment,
drift, audit) join as those services land.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_VAR = ROOT / "var" / "demo"


def chapter(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def mlbus(*args: str, stdin: str | None = None, show: bool = True) -> str:
    """Run the real `mlbus` command the way a user would, echoing it."""
    print(f"$ mlbus {' '.join(args)}", flush=True)
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "mlbus"), *args], input=stdin, text=True,
                            capture_output=True, env=os.environ)
    if result.returncode != 0:
        sys.exit(f"demo: `mlbus {' '.join(args)}` failed ({result.returncode}):\n{result.stderr}")
    if show:
        print(result.stdout.rstrip() or result.stderr.rstrip())
    return result.stdout


def wait_for(what: str, probe, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    sys.exit(f"demo: no {what} within {timeout_s:.0f}s; see {DEMO_VAR / 'log'}")


def data_to_model_story() -> None:
    from services.cli.sample_data import breast_cancer

    chapter("1. A data contract and a model spec")
    print("schemas/datasets/breast_cancer.avsc: 32 columns with types, ranges, allowed values, missing limits, key id")
    mlbus("models", "define", str(ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"), "--as", "dana")

    chapter("2. New data: a good batch and a bad one (repeated ids, a negative radius, a text value)")
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
    good_id = mlbus("data", "publish", "breast_cancer", str(data_dir / "monday.csv"), "--as", "etl", show=False).strip()
    bad_id = mlbus("data", "publish", "breast_cancer", str(data_dir / "tuesday.csv"), "--as", "etl", show=False).strip()
    print(f"good batch {good_id}\nbad batch  {bad_id}")

    chapter("3. The validator's verdicts (data.validated)")
    wait_for("validations", lambda: len(json.loads(mlbus("data", "validations", "--json", show=False))) >= 2)
    mlbus("data", "validations")
    print()
    report = mlbus("data", "report", bad_id, show=False).splitlines()
    failures = [line for line in report if not line.startswith("  warning")]
    print("\n".join(failures[:8]), f"\n... and the profile of all {len(report) - 9} columns: mlbus data report {bad_id[:8]}")

    chapter("4. The trainer trained a model version on the good batch only (models.trained, training.runs)")
    runs = wait_for("trained model", lambda: [r for r in json.loads(mlbus("runs", "list", "--json", show=False))
                                              if r["chosen"]])
    mlbus("runs", "list")
    chosen = runs[0]
    print(f"\nversion {chosen['version']}: run {chosen['run_id']}, params {chosen['hyperparameters_json']}, "
          f"roc_auc {chosen['metrics']['roc_auc']:.4f}, trained on {[b['batch_id'][:8] for b in chosen['batches']]}, "
          f"artifact sha256 {chosen['artifact_sha256'][:16]}…, code {chosen['code_version']} "
          f"@ {(chosen['git_commit'] or 'no git')[:10]}, scikit-learn {chosen['environment']['scikit-learn']}")

    chapter("5. Reproducibility: re-run the recorded training from its lineage and compare")
    mlbus("train", "--reproduce", chosen["run_id"], "--wait", "180")


def bus_story() -> None:
    from services.bus import Bus, Event, ServiceRuntime, derive_id
    from services.bus.logs import configure_logging
    from services.bus.publish import Publisher
    from services.bus.topics import consumer_lag

    chapter("6. The topic catalogue (topics.yaml) — every topic, its Avro schema, who writes and who reads")
    listing = mlbus("topics", "list", show=False).splitlines()
    print("\n".join(line[:150] for line in listing[:8]), f"\n... {len(listing) - 1} lines in all")

    chapter("7. A business app sends five scoring requests (JSON in, Avro single-object encoding on the wire)")
    requests = [{"request_id": f"demo-{i}", "entity_id": f"customer-{i}", "model": "hello",
                 "features": {"age": 30.0 + i, "visits": float(i * 3)}} for i in range(5)]
    mlbus("publish", "inference.requests", "--as", "shop-app", stdin="\n".join(json.dumps(r) for r in requests))

    chapter("8. Two malformed messages arrive too (random bytes, truncated Avro)")
    bus = Bus.from_env()
    configure_logging("demo", "console", "warning")      # show the runtime's dead-letter warnings only
    publisher = Publisher(bus, "demo")
    good = bus.schemas.encode("mlbus.InferenceRequest", {**requests[0], "categories": {}, "sent_at": 0})
    publisher.produce("inference.requests", b"broken-1", os.urandom(16), [])
    publisher.produce("inference.requests", b"broken-2", good[:-6], [])
    publisher.flush()
    print("sent 2 malformed messages to inference.requests")

    chapter("9. A service of your own: ten lines on the mlbus runtime (consume → decode → handle → produce → commit)")

    def hello_scorer(message):
        features = message.value["features"]
        score = sum(features.values()) / 100
        yield Event(record="mlbus.Prediction", key=message.value["entity_id"], id=derive_id(message.envelope.id),
                    value={"prediction_id": derive_id(message.envelope.id), "request_id": message.value["request_id"],
                           "entity_id": message.value["entity_id"], "model": "hello", "version": 1,
                           "variant": "champion", "served": True, "label": None, "score": score,
                           "probabilities": {}, "latency_ms": 0.0, "deployment_id": None, "error": None,
                           "predicted_at": message.value["sent_at"]})

    service = ServiceRuntime(bus, "hello-scorer", hello_scorer, topics=["inference.requests"])
    worker = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while sum(consumer_lag(bus, service.group, ["inference.requests"]).values()) > 0:
            if time.monotonic() > deadline:
                sys.exit("demo: the hello-scorer did not catch up within 60 s")
            time.sleep(0.2)
    finally:
        service.stop()
        worker.join(timeout=30)
    print("hello-scorer handled everything: consumer lag 0")

    chapter("10. Its predictions, decoded, with CloudEvents headers (ce_id, ce_source, causationid, traceparent)")
    predictions = mlbus("consume", "inference.predictions", "--from-beginning", "--max", "5", show=False)
    for line in predictions.splitlines():
        record = json.loads(line)
        value, headers = record["value"], record["headers"]
        print(f"  {value['request_id']}  {value['entity_id']:11}  score={value['score']:.2f}  "
              f"source={headers['ce_source']}  caused by {headers['causationid'][:8]}…")

    chapter("11. The dead-letter topic: original bytes kept, the reason in headers; the service kept going")
    for line in mlbus("consume", "inference.requests.dlq", "--from-beginning", "--max", "2", show=False).splitlines():
        record = json.loads(line)
        headers = record["headers"]
        print(f"  key={record['key']}  {len(record['value_base64'])} base64 chars  "
              f"from {headers['dlq.original.topic']}@{headers['dlq.original.offset']}  "
              f"{headers['dlq.error.class']}: {headers['dlq.error.message'][:70]}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the broker running and print how to use it")
    args = parser.parse_args()
    os.environ["MLBUS_VAR"] = str(DEMO_VAR)
    os.environ.pop("MLBUS_BOOTSTRAP", None)
    os.environ.setdefault("MLBUS_LOG_LEVEL", "warning")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "kafka"), "stop", "--dir", str(DEMO_VAR / "kafka")],
                   stdout=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", str(DEMO_VAR)], check=True)

    chapter("0. Start: a local Apache Kafka broker (KRaft) from Maven Central jars, topics, the services")
    mlbus("up")
    started = time.monotonic()
    try:
        data_to_model_story()
        bus_story()
        mlbus("status")
    finally:
        if not args.keep:
            chapter("Stop what the demo started")
            mlbus("down")
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    if args.keep:
        print(f"\nEverything is still running. In this shell:\n  export MLBUS_VAR={DEMO_VAR}\n"
              "  .venv/bin/mlbus status\n  .venv/bin/mlbus consume inference.predictions --from-beginning\n"
              "and `.venv/bin/mlbus down` when done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
