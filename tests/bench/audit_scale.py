"""Scale-out of the auditor: audit.log in 3 shards on a 3-node local cluster (replication 3), run by 1, 2 and 3
auditor copies (the shards shared out by their group): each count appends a backlog of inference requests
(personal: sealed), and the figure is events/s in all and per copy, and the CPU each part of the stage used per
1,000 events (auditors, brokers, this process). On this 2-core machine the copies share the cores with three
brokers, so events/s cannot grow here; the CPU per event says how far they would go with cores of their own."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from services.adapters import audited_topics
from tests.chaos.harness import Brokers, Stage
from tests.support.polling import wait_until

from .audit import publish_load
from .figures import Figure, Runs, absolute
from .scale import cpu_seconds

SHARDS = 3
COPIES = (1, 2, 3)


def copies_running(stage: Stage, count: int) -> list[int]:
    """`count` auditor copies holding every shard between them; their pids."""
    for name in [n for n in stage.services if n.startswith("auditor")]:
        stage.services.pop(name).stop()
    copies = [stage.start(f"auditor-{i}", "services.auditor", MLBUS_INSTANCE=str(i), MLBUS_LOG_LEVEL="info")
              for i in range(count)]
    wait_until(lambda: shards_started(stage, copies) >= SHARDS, 120, f"{count} copies running {SHARDS} shards",
               interval=0.2)
    return [copy.pid for copy in copies]


def shards_started(stage: Stage, copies) -> int:
    """How many shards the copies' logs say are running (started and not stopped since)."""
    running = set()
    for copy in copies:
        for line in (stage.workdir / f"{copy.name}.log").read_text().splitlines():
            if '"shard started"' in line or '"shard stopped"' in line:
                shard = line.split('"shard": ')[1].split(",")[0]
                (running.add if "started" in line else running.discard)((copy.name, shard))
    return len({shard for _, shard in running})


def appended(stage: Stage, count: int) -> float:
    """Publish `count` requests, then time the running copies until every one is on record: events/s."""
    started = time.perf_counter()
    publish_load(stage, count, uuid.uuid4().hex[:6])
    wait_until(lambda: stage.lag("auditor", audited_topics(stage.bus)) == 0, 1800,
               "the auditors to append everything", interval=0.2)
    return count / (time.perf_counter() - started)


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    events = 30_000 if quick else 200_000
    figures = []
    with Brokers(workdir / "kafka", nodes=3) as brokers:
        stage = Stage(brokers, workdir / "stage", replication=3, audit_shards=SHARDS)
        broker_pids = [int((brokers.node_dir(n) / "broker.pid").read_text()) for n in range(1, 4)]
        with stage.running():
            for count in COPIES if not quick else (1, 3):
                pids = copies_running(stage, count)
                appended(stage, 5_000)                                  # warm-up: every shard's chain read
                rates, per_thousand = [], []
                for _ in range(counted):
                    before = (cpu_seconds(pids), cpu_seconds(broker_pids), cpu_seconds([os.getpid()]))
                    rates.append(appended(stage, events))
                    after = (cpu_seconds(pids), cpu_seconds(broker_pids), cpu_seconds([os.getpid()]))
                    per_thousand.append(tuple((b - a) * 1000 / events for a, b in zip(before, after)))
                runs = Runs(tuple(rates))
                auditors_s, brokers_s, load_s = (sorted(p[k] for p in per_thousand)[len(per_thousand) // 2]
                                                 for k in range(3))
                figures.append(absolute(
                    f"audit scale-out: {count} auditor cop{'y' if count == 1 else 'ies'}, {SHARDS} shards, 3 brokers",
                    runs, "events/s",
                    notes=f"{runs.median / count:,.0f} events/s per copy over {events:,} requests a run (published "
                          f"first, then appended: the time includes the load's own produce); CPU per 1,000 events: "
                          f"auditors {auditors_s * 1000:,.0f} ms, brokers {brokers_s * 1000:,.0f} ms, load and "
                          f"harness {load_s * 1000:,.0f} ms: a copy with a core of its own would append ~"
                          f"{1000 / auditors_s:,.0f} events/s"))
    return figures
