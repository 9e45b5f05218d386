"""Reliability of audit.log's shards: "shard moved" — three auditor copies share a three-shard audit.log while a
steady load of inference requests comes in; one copy after another is killed with kill -9 and started again, in
turn at once (as its keep-alive would) or once the others have taken its shards (a machine lost for longer).
Every acknowledged request must be on record exactly once, in its entity's order, every message on the bus
audited once, and each shard's chain and tree verify against its own signed heads."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from services.adapters import audit_records
from services.bus.supervision import shard_owners
from tests.support.audit_log import log_problems
from tests.support.polling import bus_messages, wait_until

from .checker import ScenarioResult, result, tally
from .harness import Brokers, Service, Stage, TrackedProducer, inference_request

SHARDS = 3
COPIES = 3
RATE = 300              # requests a second: a steady load the copies audit as it comes
BURST = 30              # sent together, every BURST / RATE seconds
KILL_EVERY_S = 15.0     # past the group's session timeout (10 s): a killed copy's shards have moved on by the next


def prepared_sharded(brokers: Brokers, workdir: Path) -> Stage:
    """A stage whose audit.log is made with SHARDS partitions before the rest of its topics."""
    return Stage(brokers, workdir, audit_shards=SHARDS)


def steady_load(producer: TrackedProducer, stop: threading.Event) -> None:
    """Requests at RATE a second, for entities spread over every partition, until stop is set."""
    seq = 0
    while not stop.wait(BURST / RATE):
        for _ in range(BURST):
            producer.send(inference_request(seq, prefix="shard"), seq, track_id=request_id(seq))
            seq += 1


def request_id(seq: int) -> str:
    return f"shard-{seq:07d}"


def members(stage: Stage) -> dict[str, list[int]]:
    """The shards group's members now (client id → its shards), as `mlbus status` reads them."""
    owners = shard_owners(stage.bus)
    return {} if "error" in owners else {m["client_id"]: m["shards"] for m in owners["members"]}


def kill_and_restart(stage: Stage, victim: Service, instance: int, wait_for_move: bool) -> str:
    """kill -9 the copy; start it again at once, or only once the group has given its shards to the other
    copies (after the session timeout); what happened, for the notes."""
    held = members(stage).get(f"auditor-shards-{instance}", [])
    victim.kill()
    wait_for_move = wait_for_move and bool(held)        # a copy holding nothing (yet) has nothing to move

    def moved() -> bool:
        others = [shards for client, shards in members(stage).items() if client != f"auditor-shards-{instance}"]
        return set(held) <= {shard for shards in others for shard in shards}
    if wait_for_move:
        wait_until(moved, 120, f"the shards {held} of the killed {victim.name} to move to the other copies",
                   interval=0.5)
    victim.restart_if_exited()
    return f"{victim.name} (shards {held}{', moved on before its restart' if wait_for_move else ''})"


def audited_requests(stage: Stage, acknowledged: set[str]) -> list[dict] | None:
    """audit.log once every acknowledged request and every other message on the bus is on record (None before),
    restarting a copy that exited (a fenced one exits to start clean), as a supervisor would."""
    stage.supervise()
    records = audit_records(stage.bus)
    on_record = {(r["source_topic"], r["source_partition"], r["source_offset"]) for r in records}
    on_bus = {(stage.bus.catalogue.logical(t), p, o) for t, p, o in bus_messages(stage.bus)}
    requests = sum(r["source_topic"] == "inference.requests" for r in records)
    return records if on_bus <= on_record and requests >= len(acknowledged) else None


@contextmanager
def under_load(stage: Stage, copies: list[Service]) -> Iterator[tuple[TrackedProducer, threading.Event]]:
    """Once every copy runs a shard, the steady load (its producer, and the event that paces and stops it) for
    the body; the load is stopped when the body ends, however it ends."""
    wait_until(lambda: all("shard started" in c.log.read_text(errors="replace") for c in copies), 120,
               "every copy running a shard", interval=0.5)
    producer = TrackedProducer(stage.bus, "chaos-shards")
    stop = threading.Event()
    load = threading.Thread(target=steady_load, args=(producer, stop), daemon=True)
    load.start()
    try:
        yield producer, stop
    finally:
        stop.set()
        load.join(60)


@dataclass(frozen=True)
class Settled:
    """A run once the load is over and all of it is on record: the requests the broker never answered, audit.log's
    records, each copy's exit codes (those that exited) and whether every copy is still running."""
    unanswered: int
    records: list[dict]
    exits: dict[str, list[int]]
    alive: bool


def settled(stage: Stage, producer: TrackedProducer, copies: list[Service]) -> Settled:
    """Flush the load and wait for every acknowledged request and every message on the bus to be on record; read
    while the copies still run (after the stage stops, none is alive)."""
    unanswered = producer.flush(300)
    records = wait_until(lambda: audited_requests(stage, producer.acknowledged), 600,
                         "every acknowledged request and every message on the bus on record", interval=2.0)
    return Settled(unanswered, records, {c.name: c.exits for c in copies if c.exits}, all(c.alive() for c in copies))


def audited_outcome(stage: Stage, producer: TrackedProducer, run: Settled, name: str, first_note: str,
                    exits_note: str) -> ScenarioResult:
    """The scenario's result: every acknowledged request on record once and in order, every shard holding some and
    verifying, every copy alive; the notes are the scenario's own first and exit notes around what was found."""
    requests = [r for r in run.records if r["source_topic"] == "inference.requests"]
    ids = [stage.bus.schemas.decode(r["value"], "mlbus.InferenceRequest")[1]["request_id"] for r in requests]
    counts = tally(producer.sent, producer.acknowledged, ids)
    problems = log_problems(stage.bus, run.records)
    shards = {shard: sum(r["shard"] == shard for r in requests) for shard in range(SHARDS)}
    notes = [first_note,
             f"requests on record per shard: {shards}; {len(run.records)} records in all",
             exits_note,
             "log: " + ("; ".join(problems) or "every message once, every shard verifies")]
    if run.unanswered or producer.refused:
        notes.append(f"{len(producer.refused)} refused and {run.unanswered} unanswered by the broker")
    ok = run.alive and not problems and counts.lost == counts.duplicated == counts.out_of_order == 0 \
        and all(shards.values())
    return result(name, counts, ok, notes)


def shard_moved(workdir: Path, scale: float) -> ScenarioResult:
    """kill -9 one auditor copy after another under a steady load, started again at once or once its shards
    have moved to the other copies, in turn."""
    kills = max(2, round(6 * scale))
    with Brokers(workdir / "kafka") as brokers:
        stage = prepared_sharded(brokers, workdir)
        with stage.running():
            copies = [stage.start(f"auditor-{k}", "services.auditor", MLBUS_INSTANCE=str(k))
                      for k in range(1, COPIES + 1)]
            killed = []
            with under_load(stage, copies) as (producer, stop):
                for round_ in range(kills):
                    stop.wait(KILL_EVERY_S)             # the load's pace, not a wait for the bus
                    # restarted at once (its keep-alive) or after its shards moved to the others (a lost machine)
                    killed.append(kill_and_restart(stage, copies[round_ % COPIES], round_ % COPIES + 1,
                                                   wait_for_move=round_ % 2 == 1))
                stop.wait(KILL_EVERY_S)
            run = settled(stage, producer, copies)
        return audited_outcome(
            stage, producer, run, "shard moved",
            f"{COPIES} auditor copies on a {SHARDS}-shard audit.log, {len(killed)} kill -9 every "
            f"{KILL_EVERY_S:.0f} s under {RATE} requests/s: {'; '.join(killed)}",
            f"exit codes seen: {run.exits} (-9: killed; others: a copy that exited by itself, restarted)")


def broker_crash_audited(workdir: Path, scale: float) -> ScenarioResult:
    """Three nodes (replication 3), a three-shard audit.log kept by its auditor copies under a steady load: kill -9
    the node leading audit.log's shard 0 (a copy's transactions write its pages there) and start it again 5 s
    later. On one node Kafka itself can break a transaction killed mid-commit (docs/explanation/guarantees.md)."""
    downtime_s = 5.0
    with Brokers(workdir / "kafka", nodes=3) as brokers:
        stage = Stage(brokers, workdir, replication=3, audit_shards=SHARDS)
        with stage.running():
            copies = [stage.start(f"auditor-{k}", "services.auditor", MLBUS_INSTANCE=str(k)) for k in (1, 2)]
            with under_load(stage, copies) as (producer, stop):
                stop.wait(KILL_EVERY_S * max(scale, 0.2) * 2)     # the load's pace, not a wait for the bus
                victim = brokers.leader(stage.bus.catalogue.physical("audit.log"), 0)
                brokers.kill(victim)
                stop.wait(downtime_s)
                brokers.restart(victim)
                stop.wait(KILL_EVERY_S * max(scale, 0.2) * 2)
            run = settled(stage, producer, copies)
        return audited_outcome(
            stage, producer, run, "broker crash under audit (3 nodes)",
            f"2 auditor copies on a {SHARDS}-shard audit.log on 3 nodes, node {victim} (leading shard 0) "
            f"killed -9 under {RATE} requests/s and started again {downtime_s:.0f} s later",
            f"copies that exited by themselves (restarted): {run.exits or 'none'}")
