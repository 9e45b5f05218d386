"""Keep pace (issue 34): every service `mlbus up` runs, on one local broker with a deployed model; the scorer
answers at full speed for 60 s (--quick: 15 s) while a producer keeps inference.requests full, then the load
stops. How long the scorer takes to drain after the load, how long after the scorer's last answer the auditor
has recorded everything on every topic it reads (the goal: within 5 s), and how far behind the auditor fell.

Lag is read as the suite reads it (tests/support/lag.py): the positions a service reports on its /metrics
against the broker's end offsets now, so no committed-offset fetch waits behind an open transaction."""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition

from services.bus.kafka import base_config, producer_config
from services.bus.publish import announce_all
from services.bus.supervision import available_services, metrics_port
from services.adapters import audited_topics, declare_witness_key
from tests.chaos.harness import UNKNOWN_LAG, Brokers, Stage
from tests.support.lag import behind
from tests.support.polling import wait_until
from tests.support.processes import free_port

from .figures import Figure, Runs, absolute
from .scoring import (FEATURES, IN_FLIGHT, MODELS, Arrivals, publish_model, request_payloads, start_scorer,
                      training_data)

MODEL = "bench_lr"              # the faster of the scoring bench's models: the most the auditor is handed
WARMUP_S = 5.0
SAMPLE_S = 0.5                  # how often the audit lag is sampled during a run
DRAIN_DEADLINE_S = 900          # a run whose auditor has not drained by then fails the benchmark
GOAL_S = 5.0                    # issue 34: everything on record within 5 s of the scorer's last answer
TAIL = 50                       # messages read back from each partition's end for the last answer's time


@dataclass(frozen=True)
class Pace:
    """One run: the scorer's answers/s while saturated, both drains (s), the peak audit lag (events)."""

    answered_per_s: float
    answers: int
    backlog: int                    # requests waiting for the scorer when the load stopped
    scorer_drain_s: float
    audit_drain_s: float
    peak_audit_lag: int
    steady_audit_lag: int           # the peak from 20 % of the load on: the first burst of requests left out
    lag_sources: frozenset[str]


def start_stack(stage: Stage, model: str, fitted, features: np.ndarray) -> dict[str, int]:
    """Every service `mlbus up` runs, started as it starts them (the schemas announced, the signing services
    enrolled, the witness's key declared), each consumer serving /metrics on a port of its own; the model
    deployed and the scorer answering. Their metrics ports by name."""
    announce_all(stage.bus)
    ports = {name: free_port() for name in available_services() if metrics_port(stage.bus, name)}
    for name, module in available_services().items():
        if name == "scorer":
            continue                # started last, once it has a model to load (start_scorer waits for an answer)
        env = {"MLBUS_METRICS_PORT": str(ports[name])} if name in ports else {}
        if name == "console":
            env["MLBUS_CONSOLE_PORT"] = str(free_port())
        stage.start(name, module, **env)
    wait_until(lambda: declare_witness_key(stage.bus, stage.bus.settings.audit.witness_dir), 60, "the witness's key")
    publish_model(stage, model, fitted, features)
    stage.env["MLBUS_METRICS_PORT"] = str(ports["scorer"])      # start_scorer's Stage.start reads it once
    try:
        start_scorer(stage, model, features, "exactly-once")
    finally:
        del stage.env["MLBUS_METRICS_PORT"]
    # the ports the services were given in the end (a Stage may hand out ports of its own)
    return {name: int(stage.services[name].env["MLBUS_METRICS_PORT"]) for name in ports}


def unhandled(stage: Stage, service: str, port: int, topics: list[str]) -> tuple[int, str]:
    """Messages on `topics` the service has not handled yet, and from where: its /metrics positions against
    the broker's end offsets now, else (a partition it does not report) its group's committed offsets."""
    found = behind(stage.bus, [port], topics)
    if found is not None:
        return found, "metrics"
    return stage.lag(service, topics), "committed offsets"


class AuditLag:
    """The auditor's lag over every topic it reads, sampled every SAMPLE_S in a thread."""

    def __init__(self, stage: Stage, port: int):
        self.stage, self.port, self.topics = stage, port, audited_topics(stage.bus)
        self.samples: list[tuple[float, int]] = []          # (when, lag)
        self.sources: set[str] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            lag, source = unhandled(self.stage, "auditor", self.port, self.topics)
            if lag == UNKNOWN_LAG:          # a partition not reported yet (harness.Stage.lag): no sample
                continue
            self.samples.append((time.time(), lag))
            self.sources.add(source)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(30)

    def peak(self, since: float = 0.0) -> int:
        return max((lag for at, lag in self.samples if at >= since), default=0)


def keep_full(stage: Stage, payloads: list[tuple], arrivals: Arrivals, until: float) -> int:
    """Produce the payloads round and round until `until`, keeping IN_FLIGHT requests unanswered: the scorer
    never waits for work, and the backlog it drains at the end stays the same from run to run. How many were
    still waiting when it stopped."""
    producer = Producer({**producer_config(stage.bus.settings, "bench-load"), "queue.buffering.max.messages": 200_000})
    produced = 0
    while time.time() < until:
        if produced - len(arrivals.times) > IN_FLIGHT:
            producer.poll(0.005)
            continue
        physical, key, value, headers, _ = payloads[produced % len(payloads)]
        try:
            producer.produce(physical, value=value, key=key, headers=headers)
            produced += 1
        except BufferError:
            producer.poll(0.01)
        if produced % 1000 == 0:
            producer.poll(0)
    waiting = produced - len(arrivals.times)
    producer.flush(60)
    return waiting


def last_answer_at(stage: Stage) -> float:
    """When the scorer produced its last answer: the newest timestamp on inference.predictions (the scorer's
    clock when it produced, before its transaction committed: the earliest the answer can be said to exist)."""
    physical = stage.bus.catalogue.physical("inference.predictions")
    consumer = Consumer({**base_config(stage.bus.settings), "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    newest = 0
    try:
        for partition in consumer.list_topics(physical, timeout=30).topics[physical].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(physical, partition), timeout=30)
            consumer.assign([TopicPartition(physical, partition, max(low, high - TAIL))])
            deadline = time.monotonic() + 30
            while consumer.position([TopicPartition(physical, partition)])[0].offset < high \
                    and time.monotonic() < deadline:
                for message in consumer.consume(TAIL, 0.5):
                    if not message.error():
                        newest = max(newest, message.timestamp()[1])
    finally:
        consumer.close()
    return newest / 1000


def run(stage: Stage, ports: dict[str, int], payloads: list[tuple], seconds: float) -> Pace:
    """One load of `seconds` at full speed, then both drains."""
    arrivals = Arrivals(stage)
    lag = AuditLag(stage, ports["auditor"])
    started = time.time()
    backlog = keep_full(stage, payloads, arrivals, started + seconds)
    ended = time.time()
    drained = wait_until(lambda: unhandled(stage, "scorer", ports["scorer"], ["inference.requests"])[0] == 0
                         and time.time(), DRAIN_DEADLINE_S, "the scorer to drain", interval=0.1)
    # Polled only once the scorer is seen drained: before that, its last transaction may not be committed yet,
    # and an auditor level with what is readable would look done. So the drain is never under-stated.
    recorded = wait_until(lambda: unhandled(stage, "auditor", ports["auditor"], lag.topics)[0] == 0
                          and time.time(), DRAIN_DEADLINE_S, "the auditor to record everything", interval=0.1)
    lag.stop()
    arrivals.stop()
    window_start = started + 0.2 * seconds              # the first seconds warm the pipeline up
    answered = sum(window_start <= t <= ended for t in arrivals.times)
    return Pace(answered / (ended - window_start), len(arrivals.times), backlog, drained - ended,
                recorded - last_answer_at(stage), lag.peak(), lag.peak(window_start), frozenset(lag.sources))


def cpu_seconds(stage: Stage, brokers: Brokers) -> dict[str, float]:
    """CPU time (user + system) used so far by each service, the broker, this process (the load and the readers)
    and the whole machine (every core, other people's work included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = {name: service.pid for name, service in stage.services.items() if service.alive()}
    pids |= {"broker": int((brokers.root / "broker.pid").read_text()), "bench": os.getpid()}
    used = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / ticks      # utime, stime: fields 14 and 15
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    used["machine"] = (sum(map(int, busy)) - int(busy[3]) - int(busy[4])) / ticks    # all but idle and iowait
    return used


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    seconds = 15.0 if quick else 60.0
    features, labels = training_data()
    fitted = MODELS[MODEL]().fit(pd.DataFrame(features, columns=FEATURES), labels)
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir / uuid.uuid4().hex[:6])
        with stage.running():
            ports = start_stack(stage, MODEL, fitted, features)
            all_running(stage)
            payloads = request_payloads(stage, MODEL, features, 30_000, uuid.uuid4().hex[:6])
            run(stage, ports, payloads, WARMUP_S)
            before, started = cpu_seconds(stage, brokers), time.monotonic()
            runs = [run(stage, ports, payloads, seconds) for _ in range(counted)]
            after, elapsed = cpu_seconds(stage, brokers), time.monotonic() - started
            all_running(stage)
    cores = {name: (after[name] - before[name]) / elapsed for name in after if name in before}
    return figures(runs, seconds, cores)


def all_running(stage: Stage) -> None:
    """Every service is still up: figures measured with one missing would not be the whole stack's."""
    exited = sorted(name for name, service in stage.services.items() if not service.alive())
    if exited:
        raise RuntimeError(f"{', '.join(exited)} exited during the benchmark: see their logs in {stage.workdir}")


def figures(runs: list[Pace], seconds: float, cores: dict[str, float]) -> list[Figure]:
    rates, audit_drains = Runs(tuple(r.answered_per_s for r in runs)), Runs(tuple(r.audit_drain_s for r in runs))
    sources = " and ".join(sorted(set().union(*(r.lag_sources for r in runs))))
    machine = cores.pop("machine", 0.0)
    busiest = ", ".join(f"{name} {share:.2f}" for name, share in sorted(cores.items(), key=lambda kv: -kv[1]))
    setting = (f"{len(runs)} run(s) of {seconds:.0f} s, {MODEL} exactly-once, with every service of `mlbus up` "
               f"on one broker; cores used over the runs, drains included: {busiest}; the machine's "
               f"{os.cpu_count()} cores were {machine:.2f} busy in all (the rest: other work on it)")
    return [
        absolute("keep-pace: the scorer at full speed", rates, "events/s",
                 notes=f"answers/s from 20 % of the load to its end, {IN_FLIGHT:,} requests kept waiting; the "
                       f"auditor is handed twice as many (request and prediction); {setting}"),
        absolute("keep-pace: auditor's drain after the scorer's last answer", audit_drains, "s", f"≤ {GOAL_S:.0f} s",
                 max(audit_drains.values) <= GOAL_S,
                 notes="met only if every run is; from the newest timestamp on inference.predictions to the "
                       "auditor's lag over every topic it reads at 0 (its /metrics positions against the "
                       "broker's end offsets, polled every 0.1 s once the scorer is seen drained; a position "
                       "passes a commit marker within 1 s, so up to ~1 s of a figure may be the reading's)"),
        absolute("keep-pace: scorer's drain after the load", Runs(tuple(r.scorer_drain_s for r in runs)), "s",
                 notes=f"from the producer's stop to the scorer's lag at 0: the backlog the producer kept, "
                       f"{', '.join(f'{r.backlog:,}' for r in runs)} requests waiting at the stop; answers read "
                       f"per run {', '.join(f'{r.answers:,}' for r in runs)}"),
        absolute("keep-pace: peak audit lag", Runs(tuple(float(r.peak_audit_lag) for r in runs)), "events",
                 notes=f"sampled every {SAMPLE_S} s over the load and both drains, from {sources}; the load's first "
                       f"burst puts {IN_FLIGHT:,} requests on inference.requests at once: the peak from 20 % of the "
                       f"load on, per run, {', '.join(f'{r.steady_audit_lag:,}' for r in runs)}"),
    ]
