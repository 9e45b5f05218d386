"""Audit and replay: the auditor's append rate (events/s read, chained, added to the Merkle tree, personal
data sealed, written transactionally with their offsets and signed heads) and `mlbus audit replay` /
`rebuild-registry` / `verify` over the whole log — each beside its ceiling measured in the same run: the raw
idempotent produce rate of audit.log's own bytes for the append, the raw read rate of audit.log for the rest
(this machine's speed varies 2–3× from hour to hour; the ratios do much less)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.bus import Event, derive_id
from services.bus.envelope import envelope_for
from services.bus.kafka import base_config, producer_config
from services.bus.replay import read_batches
from services.bus.publish import wire_form
from services.bus.settings import PROJECT_ROOT
from services.adapters import audited_topics
from services.domain.pages import records_of
from tests.chaos.harness import Brokers, Stage
from tests.support.audit_log import shard_count
from tests.support.polling import wait_until

from .figures import Figure, Runs, absolute, compare
from .pipe import consume_limit, pipe_limit

AUDITOR_BATCH = 5000                # the auditor's batch size (services/auditor/__main__.py)

def load(stage: Stage, count: int, prefix: str) -> list[tuple]:
    """`count` small requests as they go on the bus: (topic, key, value, headers)."""
    now = datetime.now(timezone.utc)
    payloads = []
    for i in range(count):
        request_id = f"{prefix}-{i:07d}"
        event = Event("mlbus.InferenceRequest", key=f"c{i % 1000}", id=derive_id(request_id), subject=request_id, value={
            "request_id": request_id, "entity_id": f"c{i % 1000}", "model": "m", "features": {"x": float(i)},
            "categories": {}, "sent_at": now})
        payloads.append(wire_form(stage.bus, event, envelope_for(event, "bench-load")))
    return payloads


def publish_load(stage: Stage, count: int, prefix: str) -> None:
    """`count` small requests, pre-encoded and produced as fast as the producer goes."""
    producer = Producer({**producer_config(stage.bus.settings, "bench-load"), "queue.buffering.max.messages": 500_000})
    for topic, key, value, headers in load(stage, count, prefix):
        while True:
            try:
                producer.produce(stage.bus.catalogue.physical(topic), value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def unaudited(stage: Stage) -> int:
    """Messages the auditor has not committed yet, over every topic it reads."""
    return stage.lag("auditor", audited_topics(stage.bus))


def append_rate(stage: Stage, count: int, copies: int = 1) -> float:
    """Publish `count` events, then run the auditor (`copies` processes sharing audit.log's shards) from where it
    stopped until it has committed them all: events/s from its first commit to its last (its start-up — imports,
    group join, reading the chains' heads — is left out; in when it appended everything before its first report)."""
    publish_load(stage, count, uuid.uuid4().hex[:6])
    names = ["auditor"] if copies == 1 else [f"auditor-{i}" for i in range(copies)]
    started = time.perf_counter()
    for i, name in enumerate(names):
        stage.start(name, "services.auditor", MLBUS_LOG_LEVEL="warning", MLBUS_INSTANCE=str(i))
    backlog = wait_until(lambda: (lag := unaudited(stage)) < count and (lag, time.perf_counter()), 300,
                         "the auditor's first commit", interval=0.05)
    wait_until(lambda: unaudited(stage) == 0, 1800, "the auditor to append everything", interval=0.2)
    drained = time.perf_counter()
    for name in names:
        stage.services.pop(name).stop()
    if backlog[0] == 0:         # all appended before its copies first reported (a small --quick load): start-up in
        return count / (drained - started)      # (a lower bound)
    return backlog[0] / (drained - backlog[1])


def raw_read_rate(stage: Stage, records: int, keep: int) -> tuple[float, list[tuple[bytes, bytes, int]]]:
    """Records/s of reading audit.log raw — its `records` records, a fetch at a time as verify reads it, no
    decoding, each value dropped with its batch — and the first messages holding `keep` records, as (key, value,
    records held), for the produce ceiling."""
    kept: list[tuple[bytes, bytes, int]] = []
    held = 0
    started = time.perf_counter()
    for batch in read_batches(stage.bus, ["audit.log"], timeout_s=600):
        values = [m.value() for m in batch]
        for message in batch:
            if held >= keep:
                break
            count = len(records_of(stage.bus.schemas, message.value()))
            kept.append((message.key(), message.value(), count))
            held += count
    elapsed = time.perf_counter() - started
    return records / elapsed, kept


def raw_produce_rate(stage: Stage, kept: list[tuple[bytes, bytes, int]]) -> float:
    """Records/s of producing these messages' bytes as they are, idempotently (the services' producer settings, no
    transaction), to a fresh one-partition topic: what the auditor's writes could reach at best."""
    name = f"{stage.bus.settings.connection.namespace}bench.raw-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(base_config(stage.bus.settings))
    admin.create_topics([NewTopic(name, 1, 1, config={"max.message.bytes": "2359296"})])[name].result(60)
    producer = Producer({**producer_config(stage.bus.settings, "bench-raw"), "queue.buffering.max.messages": 500_000})
    started = time.perf_counter()
    for key, value, _ in kept:
        while True:
            try:
                producer.produce(name, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(600)
    elapsed = time.perf_counter() - started
    admin.delete_topics([name])
    return sum(count for _, _, count in kept) / elapsed


NO_WITNESS = "no witness key is trusted"     # the bench runs no witness: verify walks the log, then says so


def cli_seconds(stage: Stage, *args: str) -> tuple[float, str]:
    """(seconds, stdout) of one mlbus command, start-up included. `audit verify` exits 1 here for one reason
    only — no witness co-signs the heads, as none runs in the bench — after walking and checking the whole log."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=stage.env, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 and not (args[:2] == ("audit", "verify") and NO_WITNESS in result.stdout + result.stderr
                                       and '"first_bad_sequence": null' in result.stdout):
        raise RuntimeError(f"mlbus {' '.join(args)} failed: {result.stdout[-1000:]} {result.stderr[-2000:]}")
    return elapsed, result.stdout


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    total = 50_000 if quick else 1_000_000
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir / "audit")
        with stage.running():
            append_rate(stage, min(10_000, total // 10))                       # warm-up
            rates = Runs(tuple(append_rate(stage, (total - min(10_000, total // 10)) // counted)
                               for _ in range(counted)))
            shards = shard_count(stage.bus)
            two_copies = Runs(tuple(append_rate(stage, (total - min(10_000, total // 10)) // counted, copies=2)
                                    for _ in range(counted))) if shards > 1 else None
            verified = json.loads(cli_seconds(stage, "audit", "verify", "--json")[1])
            records = verified["records"]
            first_shard = (verified.get("shards") or [{"records": records}])[0]["records"]     # shard 0's size
            until = datetime.now(timezone.utc).isoformat()

            def rate(*args: str) -> Runs:
                return Runs(tuple(records / cli_seconds(stage, "audit", *args)[0] for _ in range(counted)))

            replay = rate("replay", "--until", until, "--json")
            rebuild = rate("rebuild-registry")
            verify = rate("verify", "--json")
            prove = Runs(tuple(cli_seconds(stage, "audit", "prove", str(first_shard * (n + 1) // (counted + 1)),
                                           "--out", str(workdir / "proof.json"))[0] for n in range(counted)))
            read_runs, kept = [], []
            for _ in range(counted):
                read, kept = raw_read_rate(stage, records, keep=200_000)
                read_runs.append(read)
            reads = Runs(tuple(read_runs))
            produces = Runs(tuple(raw_produce_rate(stage, kept) for _ in range(counted)))
            kept_records = sum(count for _, _, count in kept)
            record_size = sum(len(v) for _, v, _ in kept) // max(1, kept_records)
            pipes = Runs(tuple(pipe_limit(stage, load(stage, min(200_000, total // 5), "pipe"), record_size, AUDITOR_BATCH,
                                          partitions=1, transactional=True) for _ in range(counted)))
            consumes = Runs(tuple(consume_limit(stage, load(stage, min(200_000, total // 5), "consume"),
                                                AUDITOR_BATCH) for _ in range(counted)))
    note = f"over {records:,} audit records (each CLI run includes its start-up)"
    read_ceiling = "raw read of audit.log"
    return [absolute("audit: auditor append", rates, "events/s", "≥ 50,000 events/s", rates.median >= 50_000,
                     notes=f"{counted} runs of {(total - min(10_000, total // 10)) // counted:,} inference requests "
                           "(personal: sealed), one auditor process each, transactional, chained, Merkle tree, "
                           "signed heads"),
            compare("audit: append vs a bare pipe", rates, "events/s",
                    "bare 1:1 consume → produce pipe, transactional, no work", pipes, goal_ratio=2.0,
                    goal="≥ 2× the bare pipe",
                    notes=f"confluent-kafka consuming the same requests and producing one {record_size:,}-byte "
                          f"answer each (an audit record's mean size) in transactions of {AUDITOR_BATCH:,} with "
                          f"their offsets, nothing else: the ceiling of one audit.log message per event, the "
                          f"shape before pages"),
            compare("audit: append vs a bare consume", rates, "events/s",
                    "bare consume of the same requests: no produce, no commit, no work", consumes,
                    notes=f"confluent-kafka reading {min(200_000, total // 5):,} requests from 3 partitions, "
                          f"{AUDITOR_BATCH:,} at a time, read_committed, and dropping them: what no Python "
                          "consumer of this shape passes on this machine, whatever it does with the messages"),
            *([compare(f"audit: append, 2 copies over {shards} shards, vs a bare pipe", two_copies, "events/s",
                       "bare 1:1 consume → produce pipe, transactional, no work", pipes, goal_ratio=2.0,
                       goal="≥ 2× the bare pipe",
                       notes="two auditor processes sharing audit.log's shards through their group, on the same "
                             "2 cores as the broker and the load")] if two_copies else []),
            compare("audit: append vs raw produce", rates, "events/s", "raw idempotent produce of audit.log's bytes",
                    produces, goal_ratio=0.5, goal="≥ 50 % of the ceiling",
                    notes=f"the same audit.log bytes produced as they are, {kept_records:,} records per run"),
            absolute("audit: replay", replay, "records/s", "≥ 100,000 records/s", replay.median >= 100_000, notes=note),
            compare("audit: replay vs raw read", replay, "records/s", read_ceiling, reads, goal_ratio=0.5,
                    goal="≥ 50 % of the ceiling"),
            absolute("audit: rebuild-registry", rebuild, "records/s", "≥ 100,000 records/s", rebuild.median >= 100_000,
                     notes=note),
            absolute("audit: verify", verify, "records/s", "≥ 100,000 records/s", verify.median >= 100_000, notes=note),
            absolute("audit: prove one record", prove, "s", "< 1 s on 1,000,000 records", prove.median < 1.0,
                     notes=f"`mlbus audit prove SEQUENCE` on {records:,} records, start-up included: block roots "
                           "from the checkpoints, two blocks of records read"),
            compare("audit: verify vs raw read", verify, "records/s", read_ceiling, reads, goal_ratio=0.5,
                    goal="≥ 50 % of the ceiling", notes="verify: chain, Merkle tree and every signed head")]
