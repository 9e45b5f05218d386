"""Scoring: the scorer end to end on the local broker (requests produced to inference.requests, predictions
read from inference.predictions) against `mlflow models serve` on the same fitted model, and against the
two limits of the stage: in-process predict_proba at the scorer's batch size, and a bare confluent-kafka
consume → produce pipe with the same message sizes and no model."""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from services.bus import Event, Publisher, derive_id
from services.adapters import save_model
from services.bus.envelope import envelope_for
from services.bus.kafka import consumer_config, producer_config
from services.domain.profile import profile_column, profile_frame
from services.bus.publish import wire_form
from services.scorer.scorer import DELIVERY
from tests.chaos.harness import Brokers, Stage
from tests.support.polling import wait_until

from . import peers
from .figures import Figure, Runs, absolute, compare, measure
from .pipe import pipe_limit, pipe_phases, pipe_process, pipe_topics

FEATURES = [f"f{i:02d}" for i in range(20)]
BATCH = 1000                        # the scorer's batch size (services/scorer/scorer.py)
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def training_data(rows: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(FEATURES)))
    labels = (features[:, 0] + features[:, 1] - features[:, 2] > 0).astype(int)
    return features, labels


MODELS = {
    "bench_rf": lambda: RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0),
    "bench_lr": lambda: LogisticRegression(max_iter=1000),
}


def publish_model(stage: Stage, model: str, fitted, features: np.ndarray) -> None:
    """A version of `model` as the trainer would announce it (artifact stored by sha256), and its deployment."""
    uri, sha = save_model(stage.bus.settings.storage.artifacts_store, fitted)
    frame = pd.DataFrame(features, columns=FEATURES)
    publisher = Publisher(stage.bus, "bench")
    publisher.publish(Event("mlbus.ModelTrained", key=model, id=derive_id(model, "trained"), value={
        "model": model, "version": 1, "run_id": f"{model}-run", "request_id": f"{model}-req", "reason": "manual",
        "requested_by": "bench", "task": "classification", "estimator": type(fitted).__name__,
        "hyperparameters_json": json.dumps(fitted.get_params(), default=str), "features": FEATURES,
        "target": "label", "metric": "accuracy", "metrics": {"accuracy": 0.9}, "batches": [], "code_version": "bench",
        "environment": {}, "seed": 0, "duration_ms": 1, "artifact_uri": uri, "artifact_sha256": sha, "trained_at": NOW,
        "feature_profile": profile_frame(frame, reference=True),
        "prediction_profile": profile_column("prediction", pd.Series(fitted.predict(frame[:500]).astype(str)))}))
    publisher.publish(Event("mlbus.DeploymentChanged", key=model, id=derive_id(model, "deployed"), value={
        "deployment_id": f"{model}-dep", "model": model, "strategy": "replace", "phase": "completed",
        "routes": [{"version": 1, "variant": "champion", "share": 1.0, "served": True}], "reason": "bench",
        "actor": "bench", "cause_id": "bench", "changed_at": NOW, "version": 1}))
    publisher.flush()


def request_payloads(stage: Stage, model: str, rows: np.ndarray, count: int, prefix: str) -> list[tuple]:
    """Encoded requests (physical topic, key, value, headers, request id), ready to produce; the request id is
    also their subject (ce_subject), which a bare pipe passes on as the scorer does in its predictions."""
    physical = stage.bus.catalogue.physical("inference.requests")
    payloads = []
    for i in range(count):
        request_id = f"{prefix}-{i:07d}"
        event = Event("mlbus.InferenceRequest", key=f"c{i % 1000}", id=derive_id(request_id), subject=request_id, value={
            "request_id": request_id, "entity_id": f"c{i % 1000}", "model": model,
            "features": dict(zip(FEATURES, rows[i % len(rows)].tolist())), "categories": {}, "sent_at": NOW})
        _, key, value, headers = wire_form(stage.bus, event, envelope_for(event, "bench-load"))
        payloads.append((physical, key, value, headers, request_id))
    return payloads


class Arrivals:
    """Reads inference.predictions (or another physical topic; read_committed) in a thread: when each request's
    answer arrived."""

    def __init__(self, stage: Stage, physical: str | None = None):
        self.arrived: dict[str, float] = {}          # request id → when its answer arrived
        self.times: list[float] = []                 # every answer's arrival, repeats of a request id included
        self.done = threading.Event()
        physical = physical or stage.bus.catalogue.physical("inference.predictions")
        self.consumer = Consumer({**consumer_config(stage.bus.settings, f"bench-{uuid.uuid4().hex[:6]}", "bench"),
                                  "auto.offset.reset": "latest"})
        partitions = self.consumer.list_topics(physical, timeout=30).topics[physical].partitions
        self.consumer.assign([TopicPartition(physical, p, -1) for p in partitions])     # from the end
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            # consume(n, timeout) waits to fill n: take the first message, then only what is already here.
            first = self.consumer.consume(1, 0.1)
            for message in first + (self.consumer.consume(999, 0) if first else []):
                if message.error():
                    continue
                # The request id is the Prediction's subject header (ce_subject): no decode needed here.
                headers = dict(message.headers() or [])
                subject = headers.get("ce_subject")
                if subject is not None:
                    self.arrived[subject.decode()] = now = time.time()
                    self.times.append(now)
        self.consumer.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(30)


def scoring_stage(brokers: Brokers, workdir: Path, model: str, fitted, features: np.ndarray) -> Stage:
    stage = Stage(brokers, workdir / uuid.uuid4().hex[:6])
    publish_model(stage, model, fitted, features)
    return stage


def start_scorer(stage: Stage, model: str, features: np.ndarray, delivery: str) -> None:
    """(Re)start the scorer in a delivery mode and wait for its first answer (model loaded, partitions held)."""
    if "scorer" in stage.services:
        stage.services.pop("scorer").stop()
    stage.start("scorer", "services.scorer", MLBUS_LOG_LEVEL="warning", MLBUS_SCORER_DELIVERY=delivery)
    probe = request_payloads(stage, model, features, 1, f"probe-{uuid.uuid4().hex[:6]}")
    arrivals = Arrivals(stage)
    producer = Producer(producer_config(stage.bus.settings, "bench-load"))
    physical, key, value, headers, request_id = probe[0]
    producer.produce(physical, value=value, key=key, headers=headers)
    producer.flush(30)
    wait_until(lambda: request_id in arrivals.arrived, 120, "the scorer's first answer")
    arrivals.stop()


IN_FLIGHT = 20_000        # requests produced but not answered yet, at most, while measuring throughput


def throughput(stage: Stage, model: str, features: np.ndarray, seconds: float) -> float:
    """Requests produced as fast as the scorer takes them (a bounded backlog) for `seconds`; the scorer's
    answers per second while saturated (arrivals from 20 % to 100 % of the window)."""
    payloads = request_payloads(stage, model, features, 30_000, uuid.uuid4().hex[:6])
    arrivals = Arrivals(stage)
    producer = Producer({**producer_config(stage.bus.settings, "bench-load"), "queue.buffering.max.messages": 200_000})
    started = time.time()
    i = 0
    while time.time() - started < seconds:
        # The payloads repeat (request ids too) in a long window: count answers, not distinct ids.
        if i - len(arrivals.times) > IN_FLIGHT:            # saturated: keep the backlog bounded
            producer.poll(0.005)
            continue
        physical, key, value, headers, _ = payloads[i % len(payloads)]
        try:
            producer.produce(physical, value=value, key=key, headers=headers)
            i += 1
        except BufferError:
            producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    ended = time.time()
    arrivals.stop()
    window_start = started + 0.2 * (ended - started)
    answered = [t for t in arrivals.times if window_start <= t <= ended]
    producer.flush(60)
    drained(stage)
    return len(answered) / (ended - window_start)


def drained(stage: Stage) -> None:
    """The scorer has answered everything produced so far (the next measurement starts from an empty queue)."""
    wait_until(lambda: stage.lag("scorer", ["inference.requests"]) == 0, 600, "the scorer to drain", interval=0.5)


def latency(stage: Stage, model: str, features: np.ndarray, rate: float, seconds: float,
            via: tuple[str, str] | None = None) -> dict:
    """Requests at a fixed rate (open loop); end-to-end latency from produce() to the answer's arrival.
    via: (input, output) physical topics of a bare pipe instead of the scorer's."""
    count = int(rate * seconds)
    payloads = request_payloads(stage, model, features, count, uuid.uuid4().hex[:6])
    if via:
        payloads = [(via[0], *rest) for _, *rest in payloads]
    arrivals = Arrivals(stage, via[1] if via else None)
    producer = Producer(producer_config(stage.bus.settings, "bench-load"))
    sent: dict[str, float] = {}
    started = time.time()
    for i, (physical, key, value, headers, request_id) in enumerate(payloads):
        due = started + i / rate
        while (now := time.time()) < due:
            producer.poll(min(0.001, due - now))
        sent[request_id] = time.time()
        producer.produce(physical, value=value, key=key, headers=headers)
        producer.poll(0)
    producer.flush(60)
    wait_until(lambda: sum(r in arrivals.arrived for r in sent) >= count, 120, "every answer", interval=0.5)
    arrivals.stop()
    skip = started + min(2.0, seconds / 5)          # the first seconds warm the pipeline up
    latencies = np.array([(arrivals.arrived[r] - t) * 1000 for r, t in sent.items() if t >= skip])
    return {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
            "answered": sum(r in arrivals.arrived for r in sent), "sent": count}


def pipe_latency(stage: Stage, model: str, features: np.ndarray, rate: float, seconds: float, delivery: str,
                 counted: int) -> tuple[list[dict], str]:
    """latency() through a bare consume → produce pipe (a process of its own, committing as the scorer does in
    `delivery`) at the same rate: what Kafka and Python alone cost at this rate, in this run; and where the
    pipe's batches spent their time (pipe_phases)."""
    via = pipe_topics(stage)
    timings = stage.workdir / f"pipe-{delivery}.jsonl"
    pipe = pipe_process(stage, *via, 220, BATCH, transactional=DELIVERY[delivery], timings=timings)
    try:
        latency(stage, model, features, rate, 1.0, via)          # warm-up: joined, assigned, answering
        runs = [latency(stage, model, features, rate, seconds, via) for _ in range(counted)]
    finally:
        pipe.stop()
    return runs, pipe_phases(timings)


def predict_limit(fitted, features: np.ndarray) -> float:
    """Rows/s of predict_proba on a DataFrame of the scorer's batch size, in process."""
    frame = pd.DataFrame(features[:BATCH], columns=FEATURES)
    fitted.predict_proba(frame)
    started = time.perf_counter()
    rounds = 0
    while time.perf_counter() - started < 2.0:
        fitted.predict_proba(frame)
        rounds += 1
    return rounds * BATCH / (time.perf_counter() - started)


def security_cost(workdir: Path, features: np.ndarray, labels: np.ndarray, secured: dict, seconds: float,
                  counted: int) -> list[Figure]:
    """The same scorer (logistic regression, exactly-once) on a plaintext broker without ACLs, to show what
    TLS + SCRAM + the authorizer cost: the secured figures over these."""
    model = "bench_lr"
    fitted = MODELS[model]().fit(pd.DataFrame(features, columns=FEATURES), labels)
    with Brokers(workdir / "kafka-plaintext", insecure=True) as brokers:
        stage = scoring_stage(brokers, workdir, model, fitted, features)
        with stage.running():
            start_scorer(stage, model, features, "exactly-once")
            rows = measure(lambda: throughput(stage, model, features, seconds), counted)
            p99 = Runs(tuple(latency(stage, model, features, 1000, seconds)["p99"] for _ in range(counted)))
    secured_p99 = Runs(tuple(t["p99"] for t in secured["timing"]))
    return [compare(f"scoring {model}: rows/s, TLS+SCRAM vs plaintext", secured["rows"], "rows/s",
                    "the same on a plaintext broker without ACLs", rows, goal_ratio=None, goal="(cost of security)",
                    notes=f"exactly-once; plaintext p99 at 1,000 req/s {p99.median:.1f} ms vs secured "
                          f"{secured_p99.median:.1f} ms"),
            compare(f"scoring {model}: p99 at 1,000 req/s, TLS+SCRAM vs plaintext", secured_p99, "ms",
                    "the same on a plaintext broker without ACLs", p99, higher_is_better=False, goal_ratio=None,
                    goal="(cost of security)")]


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    seconds = 5.0 if quick else 20.0
    features, labels = training_data()
    figures = []
    secured: dict = {}
    with Brokers(workdir / "kafka") as brokers:
        for model, make in MODELS.items():
            fitted = make().fit(pd.DataFrame(features, columns=FEATURES), labels)
            stage = scoring_stage(brokers, workdir, model, fitted, features)
            with stage.running():
                ours, timing, bare = {}, {}, {}
                for delivery in ("exactly-once", "at-least-once"):
                    start_scorer(stage, model, features, delivery)
                    ours[delivery] = measure(lambda: throughput(stage, model, features, seconds), counted)
                    timing[delivery] = [latency(stage, model, features, 1000, seconds) for _ in range(counted)]
                    bare[delivery] = pipe_latency(stage, model, features, 1000, seconds, delivery, counted)
                payloads = request_payloads(stage, model, features, 20_000 if quick else 100_000, "pipe")
                pipe = Runs((pipe_limit(stage, payloads, 220, BATCH),))
                predict = Runs((predict_limit(fitted, features),))
            peer_folder = workdir / f"mlflow-{model}"
            peer_folder.mkdir(parents=True, exist_ok=True)
            joblib.dump(fitted, peer_folder / "model.joblib")
            np.save(peer_folder / "rows.npy", features[:2000])
            (peer_folder / "features.json").write_text(json.dumps(FEATURES))
            served = peers.run("mlflow_serve.py", str(peer_folder), str(min(seconds, 10.0)))
            single, batch100, single4 = (Runs((served[k]["rows_per_s"],)) for k in ("single", "batch100", "single4"))
            slower = min(pipe.median, predict.median)
            figures += [
                compare(f"scoring {model}: rows/s end to end", ours["exactly-once"], "rows/s",
                        "mlflow models serve, 1-row requests", single, goal_ratio=100, goal="≥ 100× MLflow single-row",
                        notes=f"exactly-once (at-least-once: {ours['at-least-once'].median:,.0f} rows/s). MLflow: "
                              f"100-row requests {batch100.median:,.0f} rows/s (p99 {served['batch100']['p99_ms']:.0f}"
                              f" ms), 4 connections single-row {single4.median:,.0f} rows/s; single-row p99 "
                              f"{served['single']['p99_ms']:.0f} ms"),
                compare(f"scoring {model}: vs the slower limit", ours["exactly-once"], "rows/s",
                        "slower of predict_proba and the bare Kafka pipe", Runs((slower,)), goal_ratio=0.5,
                        goal="≥ 50 % of the slower limit",
                        notes=f"predict_proba at {BATCH} rows {predict.median:,.0f} rows/s; bare consume → produce "
                              f"pipe {pipe.median:,.0f} msgs/s"),
            ]
            if model == "bench_lr":
                secured = {"rows": ours["exactly-once"], "timing": timing["exactly-once"]}
            for delivery, runs in timing.items():
                p99 = Runs(tuple(t["p99"] for t in runs))
                pipe_runs, phases = bare[delivery]
                pipe_p99 = Runs(tuple(t["p99"] for t in pipe_runs))
                goal_ms = 50 if delivery == "exactly-once" else 25
                figures.append(absolute(
                    f"scoring {model}: p99 at 1,000 req/s, {delivery}", p99, "ms", f"≤ {goal_ms} ms",
                    p99.median <= goal_ms and all(t["answered"] >= t["sent"] for t in runs),
                    notes=f"p50 {np.median([t['p50'] for t in runs]):.1f} ms; {seconds:.0f} s per run; the bare "
                          f"pipe committing alike at the same rate: p99 {pipe_p99.median:.1f} ms ({pipe_p99.spread}), "
                          f"p50 {np.median([t['p50'] for t in pipe_runs]):.1f} ms; scorer / pipe p99 "
                          f"{p99.median / pipe_p99.median:.2f}×; the pipe's {phases}"))
    return figures + security_cost(workdir, features, labels, secured, seconds, counted)
