"""The reliability scenarios (tests/chaos/__main__.py names them). Each starts its own local broker(s), runs real
services as processes, injects its fault, reads everything back with read_committed and counts (checker.tally).

`scale` multiplies every count (1.0 = the issue's sizes; the test suite runs a fast subset at a small one)."""
from __future__ import annotations

import collections
import os
import shutil
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from confluent_kafka import KafkaError, KafkaException

from services.bus import Event, Publisher, derive_id
from services.domain import NOT_AUDITED
from services.adapters import audited_topics
from services.adapters import audit_records
from services.bus.codec import MARKER
from services.adapters import publish_batch
from services.bus.topics import TopicAdmin
from tests.support.databases import table_rows
from tests.support.datasets import good, with_defect, write
from tests.support.polling import wait_until
from tests.support.samples import sample
from tests.support.witness import cosigned, witnessing

from .checker import ScenarioResult, Sent, result, tally
from .harness import (AUTO_POLICY, CONTROL_PLANE, MODEL, SPEC, Brokers, Service, Stage, TrackedProducer,
                      deploy_model, inference_request, markers_skipped, transaction_coordinator)

SCORER = "services.scorer"


def count(full: int, scale: float, least: int = 10) -> int:
    return max(least, int(full * scale))


RELAYED = "relayed"     # the label of tests/support/relay_service.py's answers (a user's own service)


def served_ids(predictions: list[dict]) -> list[str]:
    """The scorer's served answers (a relay service in the same namespace answers with label "relayed")."""
    return [p["request_id"] for p in predictions if p["served"] and p["label"] != RELAYED]


def drain(stage: Stage, service: str, topics: list[str], timeout: float) -> None:
    """Wait (restarting crashed services, as a supervisor would) until `service` has committed everything."""
    def drained() -> bool:
        stage.supervise()
        try:
            return stage.lag(service, topics) == 0
        except KafkaException:          # a restarted broker's coordinator still loading: not drained yet
            return False
    wait_until(drained, timeout, f"{service} to catch up on {topics}", interval=1.0)


def send_requests(producer: TrackedProducer, first: int, last: int,
                  faults: dict[int, Callable[[], None]] | None = None) -> None:
    for seq in range(first, last):
        if faults and seq in faults:
            faults[seq]()
        producer.send(inference_request(seq), seq, track_id=inference_request_id(seq))


def inference_request_id(seq: int) -> str:
    return f"chaos-{seq:07d}"


def scored_result(name: str, stage: Stage, producer: TrackedProducer, notes: list[str],
                  extra_ok: bool = True, only_ours: bool = False) -> ScenarioResult:
    """Every acknowledged request must have exactly one served prediction, in request order per entity
    (only_ours: count answers to the scenario's own requests only, not to hostile ones it sent besides)."""
    unanswered = producer.flush(300)
    drain(stage, "scorer", ["inference.requests"], timeout=600)
    predictions = [p for p in stage.values("inference.predictions")
                   if not only_ours or p["request_id"].startswith(inference_request_id(0)[:6])]
    counts = tally(producer.sent, producer.acknowledged, served_ids(predictions))
    if unanswered or producer.refused:
        notes.append(f"{len(producer.refused)} refused and {unanswered} unanswered by the broker (not acknowledged)"
                     + (f", e.g. {producer.refused[0]}" if producer.refused else ""))
    if stage.restarts():
        notes.append(f"restarted after a crash: {stage.restarts()} (exit codes "
                     f"{ {n: s.exits for n, s in stage.services.items() if s.exits} }; last words "
                     f"{ {n: s.last_words for n, s in stage.services.items() if s.last_words} })")
    if counts.duplicated:
        notes.append(duplicates_traced(stage, served_ids(predictions)))
    ok = extra_ok and counts.acknowledged > 0 and counts.lost == 0 and counts.duplicated == 0 \
        and counts.out_of_order == 0
    return result(name, counts, ok, notes)


def duplicates_traced(stage: Stage, served: list[str]) -> str:
    """Where answers given twice came from: a request on inference.requests twice (its producer's retries) is
    answered twice by any scorer; one there once but answered twice is the scorer's own duplicate."""
    answers = collections.Counter(served)
    requests = collections.Counter(r["request_id"] for r in stage.values("inference.requests"))
    twice = sorted(request for request, n in answers.items() if n > 1)
    own = [request for request in twice if requests[request] < answers[request]]
    return (f"answered more than once: {len(twice)} requests ({twice[0]} .. {twice[-1]}); of them on "
            f"inference.requests more than once: {sum(requests[r] > 1 for r in twice)}; answered more often than "
            f"they are there: {len(own)}" + (f" ({own[0]} .. {own[-1]})" if own else ""))


# 1 ────────────────────────────────────────────────────────────────────────────────────────────────────────
def broker_crash(workdir: Path, scale: float, nodes: int = 1) -> ScenarioResult:
    """kill -9 a broker halfway through the requests, while the scorer answers; restart it a few seconds later.
    nodes=1: the only broker, as the local setup runs it. nodes=3 (replication 3, min.insync.replicas 2): the node
    coordinating the scorer's transactions (their state and markers). On one node, a kill between a
    transaction's PrepareCommit and its markers can break the transaction's atomicity in Kafka itself
    (docs/explanation/guarantees.md, "A single broker killed mid-commit"): its notes then quote the broker."""
    n = count(100_000, scale, least=1000)
    downtime_s = 5.0
    with Brokers(workdir / "kafka", nodes=nodes) as brokers:
        stage = Stage(brokers, workdir, replication=min(nodes, 3))
        with stage.running():
            deploy_model(stage)
            stage.start("scorer", SCORER)
            producer = TrackedProducer(stage.bus)
            restarted = threading.Event()
            killed: list[int] = []

            def crash() -> None:
                # Mid-stream: the scorer is answering (not still starting up) when the broker dies.
                producer.flush(120)
                wait_until(lambda: stage.lag("scorer", ["inference.requests"]) < n // 2, 180,
                           "the scorer to answer before the crash")
                victim = 1 if nodes == 1 else transaction_coordinator(brokers, stage, "scorer")
                brokers.kill(victim)
                killed.append(victim)
                threading.Timer(downtime_s, lambda: (brokers.restart(victim), restarted.set())).start()

            send_requests(producer, 0, n, {n // 2: crash})
            wait_until(restarted.is_set, 180, "the broker to restart")
            which = "the broker" if nodes == 1 else f"node {killed[0]} of {nodes} (the scorer's transaction " \
                                                    "coordinator)"
            notes = [f"{which} killed (SIGKILL) after request {n // 2}, restarted {downtime_s:.0f} s later"]
            outcome = scored_result("broker crash" + ("" if nodes == 1 else f" ({nodes} nodes)"), stage, producer,
                                    notes)
            if (outcome.lost or outcome.duplicated) and (skipped := markers_skipped(brokers)):
                outcome.notes.append(f"{KAFKA_DROPPED_MARKERS}: {skipped}")
            if not stage.restarts():
                outcome.notes.append("the scorer reconnected by itself (no restart)")
            return outcome


KAFKA_DROPPED_MARKERS = "Kafka completed a transaction without its markers"


# 3 ────────────────────────────────────────────────────────────────────────────────────────────────────────
def zombie(workdir: Path, scale: float) -> ScenarioResult:
    """SIGSTOP the scorer (transactional), start a replacement with the same transactional id, resume."""
    n = count(20_000, scale, least=1000)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            deploy_model(stage)
            first = stage.start("scorer", SCORER)
            producer = TrackedProducer(stage.bus)
            send_requests(producer, 0, n // 3)
            producer.flush(120)
            wait_until(lambda: stage.lag("scorer", ["inference.requests"]) < n // 3, 120, "the scorer to start")
            first.signal(signal.SIGSTOP)
            second = stage.start("scorer-twin", SCORER)           # same MLBUS_INSTANCE → same transactional id
            send_requests(producer, n // 3, 2 * n // 3)
            producer.flush(120)
            wait_until(lambda: stage.lag("scorer", ["inference.requests"]) == 0, 300, "the twin to catch up")
            assignments = assigned_count(first)
            first.signal(signal.SIGCONT)           # the zombie wakes, rejoins the group and gets partitions back…
            wait_until(lambda: not first.alive() or assigned_count(first) > assignments, 120,
                       "the zombie to be fenced at once (stopped mid-transaction) or to get partitions again")
            send_requests(producer, 2 * n // 3, n)  # …and is fenced on its first transaction
            producer.flush(120)
            exit_code = wait_until(lambda: first.process.poll() is not None and (first.process.returncode,),
                                   120, "the resumed zombie to be fenced and exit")[0]
            log = first.log.read_text(errors="replace")
            fenced = "fenced" in log.lower() or "FENCED" in log
            notes = [f"zombie exited with code {exit_code}; "
                     + ("its log names the fencing" if fenced else "its log does not mention fencing"),
                     f"twin alive at the end: {second.alive()}"
                     + ("" if second.alive() else f" (its last words: {second.final_lines()})")]
            stage.services.pop("scorer")                           # a fenced zombie is not restarted
            return scored_result("zombie (fenced twin)", stage, producer, notes,
                                 extra_ok=exit_code != 0 and second.alive())


def assigned_count(service: Service) -> int:
    """How often the service's log says it was assigned partitions (requests sent before the zombie has
    partitions again would all be answered by its twin, and a zombie with nothing to do is never fenced)."""
    return service.log.read_text(errors="replace").count('"partitions assigned"')


# 4 ────────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Poison:
    topic: str
    payload: bytes
    kind: str


def poison_payloads(stage: Stage, topic: str, good_event: Event, count_: int,
                    impossible: Event | None = None) -> list[Poison]:
    """Random bytes, a wrong schema fingerprint, truncated Avro, an impossible value, an oversized record."""
    encoded = stage.bus.schemas.encode(good_event.record, good_event.value)
    rng = np.random.default_rng(7)
    kinds: list[tuple[str, Callable[[int], bytes]]] = [
        ("random-bytes", lambda i: rng.bytes(20 + i)),
        ("unknown-fingerprint", lambda i: MARKER + (i + 1).to_bytes(8, "little") + encoded[10:]),
        ("truncated", lambda i: encoded[: len(encoded) // 2]),
        ("oversized", lambda i: encoded + bytes(256 * 1024)),
    ]
    if impossible is not None:
        kinds.append(("impossible-value", lambda i: stage.bus.schemas.encode(impossible.record, impossible.value)))
    return [Poison(topic, kinds[i % len(kinds)][1](i), kinds[i % len(kinds)][0]) for i in range(count_)]


def outcome_event(seq: int) -> Event:
    request_id = inference_request_id(seq)
    request = inference_request(seq)
    return Event("mlbus.Outcome", key=request.key, id=derive_id(request_id, "outcome"), value={
        "outcome_id": f"o-{seq:07d}", "request_id": request_id, "entity_id": request.key,
        "model": request.value["model"], "label": "benign", "value": None, "observed_at": request.value["sent_at"]})


def poison_input(workdir: Path, scale: float) -> ScenarioResult:
    """Malformed messages interleaved with valid ones on the request and outcome topics (scorer, drift-watcher)
    and on the control topics (validator, registry, trainer)."""
    valid = count(10_000, scale, least=200)
    bad = count(100, scale, least=20)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            deploy_model(stage, keep_running=True)
            stage.start("scorer", SCORER)
            stage.start("drift-watcher", "services.drift_watcher")
            producer = TrackedProducer(stage.bus)
            outcomes = TrackedProducer(stage.bus, "chaos-outcomes")
            nan_request = inference_request(0)
            nan_request = replace(nan_request, value={
                **nan_request.value, "features": {**nan_request.value["features"], "mean_radius": float("nan")}})
            poisons = {
                "inference.requests": poison_payloads(stage, "inference.requests", inference_request(0), bad,
                                                      nan_request),
                "outcomes": poison_payloads(stage, "outcomes", outcome_event(0), bad),
                **{topic: poison_payloads(stage, topic, example_event(stage, topic), bad // 5)
                   for topic in ("data.batches", "approvals", "training.requests")},
            }
            every = max(1, valid // bad)
            sent_bad: dict[str, list[Poison]] = collections.defaultdict(list)
            for seq in range(valid):
                producer.send(inference_request(seq), seq, track_id=inference_request_id(seq))
                outcomes.send(outcome_event(seq), seq)
                if seq % every == 0:
                    for topic in ("inference.requests", "outcomes"):
                        if poisons[topic]:
                            send_poison(producer, stage, poisons[topic].pop(), sent_bad)
            for topic in ("data.batches", "approvals", "training.requests"):
                for poison in poisons[topic]:
                    send_poison(producer, stage, poison, sent_bad)
            expected = {topic: expected_poison(topic, sent_bad[topic]) for topic in poisons}
            producer.flush(300)
            outcomes.flush(300)
            consumers = {"scorer": ["inference.requests"], "drift-watcher": ["inference.requests", "outcomes"],
                         "validator": ["data.batches"], "registry": ["approvals"], "trainer": ["training.requests"]}
            for service, topics in consumers.items():
                drain(stage, service, topics, timeout=600)
            notes = [f"{valid} valid requests (counted above) and {len(outcomes.acknowledged)} valid outcomes, "
                     f"{sum(map(len, sent_bad.values()))} malformed messages on five topics"]
            ok = len(outcomes.acknowledged) == valid
            for topic, wanted_here in expected.items():
                dead = stage.raw(f"{topic}.dlq")
                by_service = collections.Counter(dict(m.headers())["dlq.service"].decode() for m in dead)
                intact = {m.value() for m in dead} <= wanted_here["payloads"]
                with_reason = all(dict(m.headers()).get("dlq.error.message") for m in dead)
                for service, wanted in wanted_here["per_service"].items():
                    got = by_service.get(service, 0)
                    ok &= got == wanted
                    notes.append(f"{topic}.dlq from {service}: {got} of {wanted} malformed")
                ok &= intact and with_reason
                if not intact or not with_reason:
                    notes.append(f"{topic}.dlq: bytes intact {intact}, reason headers {with_reason}")
            restarts = stage.restarts()
            ok &= not restarts
            notes.append(f"restarts: {restarts or 'none'}; every consumer's lag back to 0")
            return scored_result("poison input", stage, producer, notes, extra_ok=ok)


def send_poison(producer: TrackedProducer, stage: Stage, poison: Poison, sent: dict[str, list[Poison]]) -> None:
    sent[poison.topic].append(poison)
    producer.producer.produce(stage.bus.catalogue.physical(poison.topic), key=b"poison", value=poison.payload,
                              headers=[("origin", b"chaos")])


def expected_poison(topic: str, sent: list[Poison]) -> dict:
    """Which services must dead-letter how many of this topic's malformed messages: each of the topic's
    consumers, every one of them (a NaN feature breaks an invariant where the record is decoded)."""
    consumers = {"inference.requests": ["scorer", "drift-watcher"], "outcomes": ["drift-watcher"],
                 "data.batches": ["validator"], "approvals": ["registry"], "training.requests": ["trainer"]}[topic]
    return {"payloads": {p.payload for p in sent}, "per_service": {service: len(sent) for service in consumers}}


def example_event(stage: Stage, topic: str) -> Event:
    """A valid record of a control topic (an example datum), the base of its malformed copies."""
    record = stage.bus.catalogue[topic].schema
    datum = sample(stage.bus.schemas.schema(record).parsed)
    return Event(record, key="poison", id=derive_id(topic, "base"), value=datum)


# 5 ────────────────────────────────────────────────────────────────────────────────────────────────────────
DEFECTS = ("duplicate_keys", "missing", "range", "type", "schema", "allowed")   # each the name of its check


def bad_datasets(workdir: Path, scale: float) -> ScenarioResult:
    """Batches with random defects and good ones, interleaved: each defect reported, no good one rejected,
    no bad one trained on."""
    each = count(50, scale, least=5)
    rng = np.random.default_rng(5)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            deploy_model(stage, keep_running=True)
            publisher = Publisher(stage.bus, "chaos-data")
            sent, expected = [], {}
            kinds = [str(k) for k in rng.choice(DEFECTS, size=each)]
            for i in range(each):
                for label, frame in (("good", good(rows=200, seed=1000 + i)),
                                     (kinds[i], with_defect(kinds[i], rows=200, seed=2000 + i))):
                    path = write(frame, stage.workdir / "batches" / f"{i}-{label}.csv")
                    batch = publish_batch(stage.bus, "breast_cancer", path, "chaos", publisher)
                    sent.append(Sent(batch["batch_id"], "breast_cancer", len(sent)))
                    expected[batch["batch_id"]] = label
            publisher.flush()
            drain(stage, "validator", ["data.batches"], timeout=600)
            drain(stage, "trainer", ["data.validated", "training.requests"], timeout=900)
            validations = [v for v in stage.values("data.validated") if v["batch_id"] in expected]
            trained = stage.values("models.trained")
            counts = tally(sent, [s.id for s in sent], [v["batch_id"] for v in validations])
            good_ids = {b for b, label in expected.items() if label == "good"}
            rejected_good = [v for v in validations if v["batch_id"] in good_ids and not v["passed"]]
            unreported = [v["batch_id"] for v in validations if v["batch_id"] not in good_ids and (
                v["passed"] or expected[v["batch_id"]] not in {f["check"] for f in v["failures"]})]
            trained_on = {b["batch_id"] for t in trained for b in t["batches"]}
            bad_trained = trained_on & (set(expected) - good_ids)
            untrained_good = good_ids - trained_on
            notes = [f"{each} good and {each} defective batches ({dict(collections.Counter(kinds))}); "
                     f"{len(trained)} versions trained",
                     f"good rejected: {len(rejected_good)}; defects not reported: {len(unreported)}; "
                     f"bad batches trained on: {len(bad_trained)}; good batches in no training: {len(untrained_good)}"]
            ok = counts.lost == 0 and counts.duplicated == 0 and not (rejected_good or unreported or bad_trained
                                                                        or untrained_good)
            return result("bad datasets", counts, ok, notes)


# 6 ────────────────────────────────────────────────────────────────────────────────────────────────────────
class Throttle:
    """Slow a process down from outside: SIGSTOP / SIGCONT in a duty cycle (stopped `stopped_s` of every
    `period_s`), short enough that its heartbeats still arrive within the session timeout."""

    def __init__(self, pid: int, stopped_s: float = 0.4, period_s: float = 0.5):
        self.pid, self.stopped_s, self.period_s = pid, stopped_s, period_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self.done.wait(self.stopped_s)
            os.kill(self.pid, signal.SIGCONT)
            self.done.wait(self.period_s - self.stopped_s)
        os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> "Throttle":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def slow_consumer(workdir: Path, scale: float) -> ScenarioResult:
    n = count(100_000, scale, least=2000)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            deploy_model(stage)
            scorer = stage.start("scorer", SCORER)
            producer = TrackedProducer(stage.bus)
            send_requests(producer, 0, 100)
            producer.flush(60)
            drain(stage, "scorer", ["inference.requests"], timeout=120)
            rss_before = scorer.peak_rss_mb()
            lag_peak = 0
            with Throttle(scorer.pid):
                send_requests(producer, 100, n)
                producer.flush(300)
                throttled_until = time.monotonic() + 20
                while time.monotonic() < throttled_until:     # keep it slow under a full backlog for 20 s
                    lag_peak = max(lag_peak, stage.lag("scorer", ["inference.requests"]))
                    time.sleep(1.0)
            lag_at_end_of_slowdown = stage.lag("scorer", ["inference.requests"])
            drain_started = time.monotonic()
            drain(stage, "scorer", ["inference.requests"], timeout=600)
            drained_s = time.monotonic() - drain_started
            peak = scorer.peak_rss_mb()
            log = scorer.log.read_text(errors="replace")
            assignments = log.count('"partitions assigned"')
            notes = ["scorer stopped 80 % of the time (SIGSTOP 0.4 s of every 0.5 s) for the whole load plus 20 s",
                     f"lag peaked at {lag_peak}, was {lag_at_end_of_slowdown} when the slowdown ended, drained to 0 "
                     f"in {drained_s:.0f} s", f"peak RSS {peak:.0f} MB (after warm-up {rss_before:.0f} MB)",
                     f"partition assignments in the scorer's log: {assignments} (1 = no rebalance after the start)"]
            ok = assignments <= 1 and peak < 1024
            return scored_result("slow consumer", stage, producer, notes, extra_ok=ok)


# 7 ────────────────────────────────────────────────────────────────────────────────────────────────────────
def scale_out_in(workdir: Path, scale: float) -> ScenarioResult:
    """1 → 3 → 1 scorers (transactional), and 1 → 2 → 1 of a user's at-least-once service on the bus runtime."""
    n = count(100_000, scale, least=3000)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            deploy_model(stage)
            stage.start("scorer", SCORER)
            stage.start("relay", "tests.support.relay_service", MLBUS_LOG_LEVEL="info")
            producer = TrackedProducer(stage.bus)

            def out() -> None:
                for i in (1, 2):
                    stage.start(f"scorer-{i}", SCORER, MLBUS_INSTANCE=str(i))
                stage.start("relay-1", "tests.support.relay_service", MLBUS_INSTANCE="1", MLBUS_LOG_LEVEL="info")

            def back_in() -> None:
                for name in ("scorer-1", "scorer-2", "relay-1"):
                    stage.services.pop(name).stop()

            send_requests(producer, 0, n, {n // 4: out, 3 * n // 4: back_in})
            outcome = scored_result("scale out and in", stage, producer, [
                "scorers 1 → 3 at a quarter of the requests, back to 1 at three quarters (SIGTERM)"])
            drain(stage, "relay", ["inference.requests"], timeout=300)
            relayed = [p["request_id"] for p in stage.values("inference.predictions") if p["label"] == RELAYED]
            relay_counts = tally(producer.sent, producer.acknowledged, relayed)
            outcome.notes.append(f"user service 1 → 2 → 1 (at-least-once): {relay_counts.lost} lost, "
                                 f"{relay_counts.duplicated} duplicated of {relay_counts.acknowledged}")
            outcome.passed &= relay_counts.lost == 0 and relay_counts.duplicated == 0
            return outcome


# 8 ────────────────────────────────────────────────────────────────────────────────────────────────────────
def three_brokers(workdir: Path, scale: float, kills: int = 5) -> ScenarioResult:
    """Three KRaft nodes, replication 3, min.insync.replicas 2: kill the leader of partition 0 `kills` times
    during the events; then two nodes down: nothing may be acknowledged; after their restart, all is."""
    n = count(100_000, scale, least=2000)
    with Brokers(workdir / "kafka", nodes=3) as brokers:
        stage = Stage(brokers, workdir, replication=3)
        physical = stage.bus.catalogue.physical("inference.requests")
        producer = TrackedProducer(stage.bus)
        killed = []

        def kill_leader() -> None:
            leader = brokers.leader(physical)
            brokers.kill(leader)
            killed.append(leader)
            send_requests(producer, len(producer.sent), len(producer.sent) + n // (2 * kills))  # while it is down
            brokers.restart(leader)
            wait_until(lambda: fully_replicated(brokers, physical), 120, "the ISR to be whole again")

        faults = {n * k // (kills + 1): kill_leader for k in range(1, kills + 1)}
        seq = 0
        while seq < n:
            if seq in faults:
                faults.pop(seq)()
                seq = len(producer.sent)
                continue
            producer.send(inference_request(seq), seq, track_id=inference_request_id(seq))
            seq += 1
        unanswered = producer.flush(300)
        notes = [f"leader of partition 0 killed {kills} times (nodes {killed}), each restarted after "
                 f"{n // (2 * kills)} more events were sent; {len(producer.refused)} refused, {unanswered} unanswered"]

        # Two of three down: below min.insync.replicas (and the controller quorum), so nothing is acknowledged.
        down = [k for k in (1, 2, 3) if k != brokers.leader(physical)][:2]
        for node in down:
            brokers.kill(node)
        refused_phase = TrackedProducer(stage.bus, "chaos-refused", **{"message.timeout.ms": 15_000})
        for seq in range(n, n + 100):
            refused_phase.send(inference_request(seq), seq, track_id=inference_request_id(seq))
        refused_phase.flush(60)
        for node in down:
            brokers.restart(node)
        wait_until(lambda: fully_replicated(brokers, physical), 180, "the cluster to recover")
        recovered = TrackedProducer(stage.bus, "chaos-recovered")
        for seq in range(n + 100, n + 200):
            recovered.send(inference_request(seq), seq, track_id=inference_request_id(seq))
        recovered.flush(120)
        notes.append(f"two nodes down ({down}): {len(refused_phase.acknowledged)} of 100 acknowledged, "
                     f"{len(refused_phase.refused)} refused; after their restart {len(recovered.acknowledged)} of 100")

        sent = producer.sent + refused_phase.sent + recovered.sent
        acked = producer.acknowledged | refused_phase.acknowledged | recovered.acknowledged
        read = [r["request_id"] for r in stage.values("inference.requests")]
        counts = tally(sent, acked, read)
        landed_anyway = len(set(read) & {s.id for s in refused_phase.sent})
        if landed_anyway:
            notes.append(f"{landed_anyway} refused events were written after all (at-least-once for the producer)")
        ok = (counts.lost == 0 and counts.duplicated == 0 and counts.out_of_order == 0
              and not refused_phase.acknowledged and len(recovered.acknowledged) == 100)
        return result("three-broker cluster", counts, ok, notes)


def fully_replicated(brokers: Brokers, physical: str) -> bool:
    admin = brokers.admin()
    try:
        partitions = admin.list_topics(physical, timeout=10).topics[physical].partitions.values()
    except Exception:
        return False
    return all(len(p.isrs) == 3 and p.leader >= 0 for p in partitions)


# 9 ────────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass
class Probe:
    fault: str
    clear_error: bool
    behaviour: str
    outputs_after_fix: int
    detail: str = ""


def crashed_with(service, phrase: str, timeout: float = 120) -> tuple[int, bool]:
    """Wait for the service to exit; (exit code, whether its log says `phrase`)."""
    code = wait_until(lambda: service.process.poll() is not None and (service.process.returncode,), timeout,
                      f"{service.name} to stop on its fault")[0]
    return code, phrase.lower() in service.log.read_text(errors="replace").lower()


def disk_and_config_faults(workdir: Path, scale: float) -> ScenarioResult:
    """Artifact store unwritable, registry database locked and unreachable, a topic missing."""
    probes: list[Probe] = []
    blocker = workdir / "not-a-directory"
    workdir.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where a directory should be\n")
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with stage.running():
            policy = stage.workdir / "policy.yaml"
            policy.write_text(AUTO_POLICY)
            stage.cli("models", "policy", str(policy), person="lead")
            stage.cli("models", "define", str(SPEC), person="dana")
            stage.start("validator", "services.validator")
            registry = stage.start("registry", "services.registry")
            trainer = stage.start("trainer", "services.trainer", MLBUS_ARTIFACTS=str(blocker / "artifacts"))
            wait_until(lambda: "service started" in registry.log.read_text(), 120, "the registry to start")
            batch = publish_batch(stage.bus, "breast_cancer", write(good(rows=300), workdir / "good.csv"), "chaos")

            # (a) The artifact store cannot be written: the trainer crashes loudly, the request stays uncommitted.
            code, clear = crashed_with(trainer, "not a directory", timeout=300)
            nothing_trained = not stage.values("models.trained")
            # (b) …meanwhile the registry's database is locked by another writer.
            lock = sqlite3.connect(stage.bus.settings.storage.database_url.removeprefix("sqlite:///"), timeout=1)
            lock.execute("BEGIN EXCLUSIVE")
            stage.services.pop("trainer")
            stage.start("trainer", "services.trainer")              # the artifact store mended: same request, once
            trained = wait_until(lambda: stage.values("models.trained"), 300, "the training after the fix")
            probes.append(Probe("artifact store unwritable", clear and code != 0 and nothing_trained,
                                f"trainer exit {code}, nothing published; restarted after the fix", len(trained)))
            code, clear = crashed_with(registry, "database is locked", timeout=120)
            lock.rollback()
            lock.close()
            stage.services.pop("registry")
            stage.start("registry", "services.registry")
            decided = wait_until(lambda: [d for d in stage.values("models.lifecycle") if d["kind"] == "approved"], 120,
                                 "the registry's approval after the lock")
            probes.append(Probe("registry database locked", clear and code != 0,
                                f"registry exit {code}; decision made once after restart", len(decided)))

            # (c) The database unreachable: the registry refuses to start, naming it.
            unreachable = stage.start("registry-unreachable", "services.registry",
                                      MLBUS_DATABASE_URL=f"sqlite:///{blocker}/mlbus.db")
            code, clear = crashed_with(unreachable, "database", timeout=120)
            stage.services.pop("registry-unreachable")
            probes.append(Probe("registry database unreachable", clear and code != 0, f"exit {code} at start", 0))

            # (d) A topic missing: a service refuses to start and says which, until `mlbus topics apply`.
            admin, missing = TopicAdmin(stage.bus).admin, stage.bus.catalogue.physical("deployments")
            admin.delete_topics([missing])[missing].result(30)
            deployer = stage.start("deployer", "services.deployer")
            code, clear = crashed_with(deployer, "topics missing", timeout=120)
            stage.services.pop("deployer")
            wait_until(lambda: stage.cli("topics", "apply").returncode == 0, 60, "topics apply to succeed")
            deployer = stage.start("deployer", "services.deployer")
            deployed = wait_until(lambda: [d for d in stage.values("deployments") if d["phase"] == "completed"], 180,
                                  "the deployment after the topic came back")
            probes.append(Probe("topic missing", clear and code != 0,
                                f"deployer exit {code}; after `mlbus topics apply` it deployed", len(deployed)))

    sent = [Sent(batch["batch_id"], "batch", 0)]
    read = [t["batches"][0]["batch_id"] for t in trained]
    counts = tally(sent, [batch["batch_id"]], read)
    notes = [f"{p.fault}: clear error {'yes' if p.clear_error else 'NO'}; {p.behaviour}"
             + (f"; {p.outputs_after_fix} output(s)" if p.outputs_after_fix else "") for p in probes]
    ok = (all(p.clear_error for p in probes) and counts.lost == 0 and counts.duplicated == 0
          and len(decided) == 1 and len(deployed) == 1)
    return result("disk and config faults", counts, ok, notes)


# 2 ────────────────────────────────────────────────────────────────────────────────────────────────────────
KILL_ORDER = ("validator", "trainer", "registry", "deployer", "scorer", "drift-watcher", "auditor",
              "registry", "auditor", "registry", "auditor")
NOT_EVENTS = ("schemas", *NOT_AUDITED)   # announcements repeat by design; audit checked apart


def service_crash(workdir: Path, scale: float) -> ScenarioResult:
    """Every service running; requests flow and new batches arrive (each: validation → training → version →
    policy decision → deployment); kill -9 each service in turn mid-stream (the registry and the auditor
    three times), restarting it at once. Then: every request answered once, every batch validated once,
    no event id twice on any topic (a repeated side effect would repeat its derived id), and audit.log
    holds every message on the bus exactly once with a chain that verifies."""
    n = count(20_000, scale, least=2000)
    batches = 4
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir, MLBUS_AUDIT_CHECKPOINT_EVERY="500")
        with stage.running():
            deploy_model(stage, keep_running=True)
            for name, module in (("scorer", SCORER), ("drift-watcher", "services.drift_watcher"),
                                 ("auditor", "services.auditor")):
                stage.start(name, module)
            producer = TrackedProducer(stage.bus)
            publisher = Publisher(stage.bus, "chaos-data")
            published = []
            killed = []

            def kill(name: str) -> Callable[[], None]:
                def fault() -> None:
                    service = stage.services[name]
                    service.kill()
                    killed.append(name)
                    service.start()
                return fault

            def new_batch(i: int) -> Callable[[], None]:
                def publish() -> None:
                    path = write(good(rows=200, seed=500 + i), stage.workdir / "batches" / f"{i}.csv")
                    published.append(publish_batch(stage.bus, "breast_cancer", path, "chaos", publisher)["batch_id"])
                    publisher.flush()
                return publish

            faults: dict[int, Callable[[], None]] = {}
            for i in range(batches):
                faults[n * i // batches + n // (2 * batches)] = new_batch(i)
            for i, name in enumerate(KILL_ORDER):
                at = n * (i + 1) // (len(KILL_ORDER) + 1)
                while at in faults:
                    at += 1
                faults[at] = kill(name)
            send_requests(producer, 0, n, faults)
            outcome = scored_result("service crash", stage, producer,
                                    [f"kill -9 in turn at even intervals: {', '.join(killed)}"])
            for service, topics in (("validator", ["data.batches"]),
                                    ("trainer", ["data.validated", "training.requests"]),
                                    ("registry", ["models.trained", "approvals"]),
                                    ("deployer", ["models.lifecycle", "deployments"])):
                drain(stage, service, topics, timeout=600)
            validations = collections.Counter(v["batch_id"] for v in stage.values("data.validated"))
            batch_lost = [b for b in published if validations[b] == 0]
            batch_twice = sum(validations[b] - 1 for b in published if validations[b] > 1)
            versions = [t["version"] for t in stage.values("models.trained")]
            repeated = repeated_event_ids(stage)
            audit_whole, audit_note = audit_is_whole(stage)
            outcome.notes += [
                f"{len(published)} batches: {len(batch_lost)} not validated, {batch_twice} validated twice; "
                f"versions trained {sorted(versions)}",
                "event ids seen twice on the bus: " + (", ".join(f"{t} {c}" for t, c in repeated.items()) or "none"),
                audit_note]
            outcome.lost += len(batch_lost)
            outcome.duplicated += batch_twice + sum(repeated.values())
            outcome.passed &= (not batch_lost and not batch_twice and not repeated and audit_whole
                               and len(versions) == len(set(versions)))
            return outcome


def repeated_event_ids(stage: Stage) -> dict[str, int]:
    """Per topic, how many events repeat an id already on it (all but schemas and audit topics)."""
    from services.bus.replay import read_topics

    repeated = {}
    for topic in stage.bus.catalogue.topics:
        if topic in NOT_EVENTS or topic.endswith(".dlq"):
            continue
        ids = collections.Counter(r.envelope.id for r in read_topics(stage.bus, [topic], timeout_s=300))
        extra = sum(c - 1 for c in ids.values() if c > 1)
        if extra:
            repeated[topic] = extra
    return repeated


def audit_is_whole(stage: Stage) -> tuple[bool, str]:
    """audit.log: one record per message on the bus (none missing, none twice), each shard numbered 1..N with its
    chain and signed heads verifying (tests/support/audit_log.py)."""
    from tests.support.audit_log import describe, log_problems

    for name in [n for n in stage.services if n != "auditor"]:    # nothing new on the bus while counting
        stage.services.pop(name).stop()
    drain(stage, "auditor", audited_topics(stage.bus), timeout=600)
    records = audit_records(stage.bus)
    problems = log_problems(stage.bus, records)
    return not problems, f"{describe(stage.bus, records)}: " + ("; ".join(problems) or "whole, verified")


# 10 ───────────────────────────────────────────────────────────────────────────────────────────────────────
def runtime_inputs(stage: Stage) -> dict[str, list[str]]:
    """What each service's runtime consumes (and commits), to wait for its lag."""
    from services.drift_watcher.router import INPUTS

    inputs = {name: [t.name for t in stage.bus.catalogue.consumed_by(name)]
              for name in ("validator", "trainer", "registry", "deployer")}
    inputs.update({"scorer": ["inference.requests"], "drift-watcher": list(INPUTS),
                   "auditor": audited_topics(stage.bus)})
    return inputs


def valid_but_hostile(workdir: Path, scale: float) -> ScenarioResult:
    """Schema-valid, hostile records (tests/support/hostile.py: path-like names, nested, huge and non-finite
    JSON in every *_json field, NaN, ±inf and 1e308, the extremes of every long and time, 1 MiB strings, NUL,
    control and direction characters, malformed keys and signatures, empty and huge map keys, references to
    nothing, records of the wrong type), with hostile Kafka keys and headers, into every consumed topic among
    normal requests, with every service running. Then: no service restarted, every hostile record either
    handled or in a DLQ with its reason, every normal request answered exactly once, all lags back to 0,
    audit.log complete and verifying. A record larger than the broker takes is refused at produce (counted)."""
    from tests.support.hostile import HOSTILE_TIMES, records_for

    valid = count(5_000, scale, least=200)
    hostile_total = count(7_000, scale, least=60)         # a fifth are larger than a broker takes: never sent
    budget = 3
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir, MLBUS_POISON_BUDGET=str(budget))
        with stage.running():
            deploy_model(stage, keep_running=True)
            for name, module in (("scorer", SCORER), ("drift-watcher", "services.drift_watcher"),
                                 ("auditor", "services.auditor")):
                stage.start(name, module)
            topics = [t.name for t in stage.bus.catalogue if t.schema and t.consumers]
            per_topic = -(-hostile_total // len(topics))          # at least hostile_total in all
            hostile = [(topic, record, value) for i, topic in enumerate(topics)
                       for record, value in records_for(stage.bus, topic, per_topic, seed_value=i,
                                                        times=HOSTILE_TIMES)]
            rng = np.random.default_rng(11)
            order = rng.permutation(len(hostile))
            producer = TrackedProducer(stage.bus)
            every = max(1, valid // len(hostile))
            sent_hostile, too_large = collections.Counter(), 0
            keys = [b"hostile", b"k" * 100_000, b"\xff\xfe\x00", b""]
            headers = [[("ce_id", b"x" * 100_000)], [("ce_source", b"\xff\xfe")], [("correlationid", b"\x1b[31m")],
                       [("traceparent", None)], []]

            def send_hostile(index: int) -> None:
                nonlocal too_large
                topic, record, value = hostile[order[index]]
                try:
                    while True:
                        try:
                            producer.producer.produce(
                                stage.bus.catalogue.physical(topic), key=keys[index % len(keys)],
                                value=stage.bus.schemas.encode(record, value),
                                headers=[("origin", b"hostile"), *headers[index % len(headers)]])
                            break
                        except BufferError:             # the client's queue is full: let it send some first
                            producer.producer.poll(0.1)
                except KafkaException as error:        # larger than the producer or broker takes: never sent
                    if error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                        raise
                    too_large += 1
                    return
                sent_hostile[topic] += 1

            faults = {seq: partial(send_hostile, i) for i, seq in enumerate(range(0, valid, every))
                      if i < len(hostile)}
            send_requests(producer, 0, valid, faults)
            for i in range(len(faults), len(hostile)):
                send_hostile(i)
            outcome = scored_result("valid but hostile", stage, producer, [], only_ours=True)
            for service, inputs in runtime_inputs(stage).items():
                drain(stage, service, inputs, timeout=600)
            alive = {name: service.alive() for name, service in stage.services.items()}
            dead_letters, reasonless, poison = collections.Counter(), 0, collections.Counter()
            for topic in topics:
                for message in stage.raw(f"{topic}.dlq"):
                    headers = dict(message.headers())
                    dead_letters[topic] += 1
                    reasonless += not headers.get("dlq.error.message")
                    if headers.get("dlq.stage") == b"handler":        # a crash the poison budget caught
                        poison[headers["dlq.service"].decode()] += 1
            restarts = stage.restarts()
            started_again, start_note = started_over_history(stage)      # before the count stops all but
            audit_whole, audit_note = audit_is_whole(stage)                # the auditor
            outcome.notes += [
                f"{sum(sent_hostile.values())} hostile records on {len(sent_hostile)} topics among {valid} requests "
                f"({too_large} more refused at produce: larger than the broker takes)",
                "dead-lettered: " + ", ".join(f"{t} {n}" for t, n in sorted(dead_letters.items())),
                f"dead letters without a reason: {reasonless}",
                f"dead-lettered by a handler (it raised on them; no restart): {dict(poison) or 'none'}",
                f"restarts: {restarts or 'none'}; alive at the end: {all(alive.values())}", start_note, audit_note]
            outcome.passed &= all(alive.values()) and not reasonless and not restarts and started_again and \
                audit_whole
            return outcome


def started_over_history(stage: Stage) -> tuple[bool, str]:
    """Every service stopped, then started again over the history the run left (hostile records included): a
    start-up reads it again (rebuilds, followers, the auditor's chain), so each must reach its loop ('service
    started' in its log, again) and still be up — no restart."""
    def starts(service: Service) -> int:
        return service.log.read_text(errors="replace").count("service started")
    before = {name: starts(service) for name, service in stage.services.items()}
    stage.stop_all()
    for service in stage.services.values():
        service.start()

    def settled() -> bool:                   # all started again, or one died (no point waiting)
        return any(not s.alive() for s in stage.services.values()) or \
            all(starts(s) > before[name] for name, s in stage.services.items())
    wait_until(settled, 300, "every service to start again over the hostile history", interval=1.0)
    dead = sorted(name for name, service in stage.services.items() if not service.alive())
    return not dead, ("started again over the hostile history: " +
                      (f"all {len(stage.services)} up" if not dead else f"died: {', '.join(dead)}"))


# 11 ───────────────────────────────────────────────────────────────────────────────────────────────────────
def recovery_drill(workdir: Path, scale: float) -> ScenarioResult:
    """A model deployed and serving; the services stop, `mlbus backup`; the broker's data and var/ are
    destroyed; a new broker, `mlbus restore`, `mlbus acl apply`, the services again. Then the registry's
    database, the deployments, `audit verify` and `explain` of an old request are as before, and serving
    resumes: every request of both halves answered exactly once, in order per entity."""
    n = count(4000, scale, least=200)
    backup = workdir / "backup"
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir)
        with witnessing(stage.bus, stage.env, workdir / "witness.log"):     # it outlives the auditor's last head
            with stage.running():
                deploy_model(stage, keep_running=True)
                for name, module in (("scorer", SCORER), ("auditor", "services.auditor")):
                    stage.start(name, module)
                before_producer = TrackedProducer(stage.bus)
                send_requests(before_producer, 0, n // 2)
                before_producer.flush(300)
                drain(stage, "scorer", ["inference.requests"], timeout=600)
                drain(stage, "auditor", audited_topics(stage.bus), timeout=600)
            sent_before, acknowledged_before = before_producer.sent, before_producer.acknowledged
            del before_producer                                   # its client would keep calling the old broker
            cosigned(stage.bus)
            before = recovery_view(stage)
        made = stage.cli("backup", str(backup))
        if made.returncode != 0:
            raise RuntimeError(f"mlbus backup failed: {made.stderr}")
    shutil.rmtree(workdir / "kafka")                         # the broker's data, and var/: gone
    shutil.rmtree(workdir / "var")
    with Brokers(workdir / "kafka-new") as brokers:
        restored = Stage(brokers, workdir, prepare=False, MLBUS_NAMESPACE=stage.env["MLBUS_NAMESPACE"])
        started = time.monotonic()
        for args in (("restore", str(backup)), ("acl", "apply")):
            done = restored.cli(*args)
            if done.returncode != 0:
                raise RuntimeError(f"mlbus {' '.join(args)} failed: {done.stderr}")
        restore_s = time.monotonic() - started
        # var/ is gone with the witness's state: a new witness checks the restored log from its start, co-signs
        with restored.running(), witnessing(restored.bus, restored.env, workdir / "witness-new.log"):
            for name, module in (*CONTROL_PLANE.items(), ("scorer", SCORER), ("auditor", "services.auditor")):
                restored.start(name, module)
            after_producer = TrackedProducer(restored.bus)
            send_requests(after_producer, n // 2, n)
            unanswered = after_producer.flush(300)
            drain(restored, "scorer", ["inference.requests"], timeout=600)
            wait_until(lambda: registry_rows(restored) == before["registry"], 120,
                       "the restored registry to rebuild its database")
            drain(restored, "auditor", audited_topics(restored.bus), timeout=600)
            cosigned(restored.bus)
            after = recovery_view(restored)
        predictions = served_ids(restored.values("inference.predictions"))
        counts = tally(sent_before + after_producer.sent, acknowledged_before | after_producer.acknowledged,
                       predictions)
        same = {part: after[part] == before[part] for part in ("registry", "deployments", "explain")}
        served_once = counts.lost == counts.duplicated == counts.out_of_order == unanswered == 0
        return result("recovery drill", counts, served_once and all(same.values()) and after["verified"], [
            f"{n // 2} requests before the backup, {n - n // 2} after the restore onto a new broker",
            f"backup: {made.stderr.strip().splitlines()[-1]}; restore and acl apply took {restore_s:.1f} s",
            "as before: " + ", ".join(f"{part} {'yes' if ok else 'NO'}" for part, ok in same.items()),
            f"audit verify after the restore: {'passes' if after['verified'] else 'FAILS'}"])


def registry_rows(stage: Stage) -> dict:
    return table_rows(stage.bus.settings.storage.database_url)


def recovery_view(stage: Stage) -> dict:
    """What the drill compares before and after: the registry's tables, the deployments, `explain` of the first
    request, and whether `audit verify` passes."""
    explained = stage.cli("audit", "explain", inference_request_id(0), "--json")
    deployments = stage.cli("deployments", MODEL, "--json")
    return {"registry": registry_rows(stage),
            "deployments": deployments.stdout if deployments.returncode == 0 else None,
            "explain": explained.stdout if explained.returncode == 0 else None,
            "verified": stage.cli("audit", "verify").returncode == 0}
