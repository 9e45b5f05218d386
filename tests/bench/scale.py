"""Scale-out of the scorer: 1, 2 and 3 copies (exactly-once, MLBUS_INSTANCE 0..2) on a 3-node local cluster
(replication 3), each count saturated with requests as the scoring benchmark does: rows/s in all and per
copy, and the CPU every part of the stage used per 1,000 rows (scorers, brokers, the load generator and the
reader). On this 2-core machine the copies share the cores with three brokers, so rows/s cannot grow here;
the CPU per row is what says how far it would go with cores of its own."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, TopicPartition
from sklearn.linear_model import LogisticRegression

from services.bus.kafka import base_config, group_id
from tests.chaos.harness import Brokers, Stage

from .figures import Figure, Runs, absolute
from .scoring import FEATURES, drained, publish_model, throughput, training_data

MODEL = "bench_lr"
COPIES = (1, 2, 3)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (and what they waited for of their threads) so far."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def requests_on_topic(stage: Stage) -> int:
    """How many requests inference.requests has ever held (the sum of its partitions' end offsets)."""
    physical = stage.bus.catalogue.physical("inference.requests")
    consumer = Consumer({**base_config(stage.bus.settings), "group.id": group_id(stage.bus.settings, "bench-offsets")})
    try:
        partitions = consumer.list_topics(physical, timeout=30).topics[physical].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=30)[1] for p in partitions)
    finally:
        consumer.close()


def copies_running(stage: Stage, count: int, features) -> list[int]:
    """`count` scorer copies, each having answered (models loaded, partitions held); their pids."""
    for name in [n for n in stage.services if n.startswith("scorer")]:
        stage.services.pop(name).stop()
    pids = [stage.start(f"scorer-{i}", "services.scorer", MLBUS_INSTANCE=str(i), MLBUS_LOG_LEVEL="warning").pid
            for i in range(count)]
    throughput(stage, MODEL, features, 3.0)          # warm-up: every copy joined, assigned and loaded
    drained(stage)
    return pids


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    seconds = 5.0 if quick else 20.0
    features, labels = training_data()
    fitted = LogisticRegression(max_iter=1000).fit(pd.DataFrame(features, columns=FEATURES), labels)
    figures = []
    with Brokers(workdir / "kafka", nodes=3) as brokers:
        stage = Stage(brokers, workdir / "stage", replication=3)
        broker_pids = [int((brokers.node_dir(n) / "broker.pid").read_text()) for n in range(1, 4)]
        with stage.running():
            publish_model(stage, MODEL, fitted, features)
            for count in COPIES if not quick else (1, 3):
                pids = copies_running(stage, count, features)
                rates, per_thousand = [], []
                for _ in range(counted):
                    before = (cpu_seconds(pids), cpu_seconds(broker_pids), cpu_seconds([os.getpid()]))
                    sent = requests_on_topic(stage)
                    rate = throughput(stage, MODEL, features, seconds)          # returns once all are answered
                    rows = requests_on_topic(stage) - sent
                    after = (cpu_seconds(pids), cpu_seconds(broker_pids), cpu_seconds([os.getpid()]))
                    rates.append(rate)
                    per_thousand.append(tuple((b - a) * 1000 / rows for a, b in zip(before, after)))
                runs = Runs(tuple(rates))
                scorers_s, brokers_s, load_s = (sorted(p[k] for p in per_thousand)[len(per_thousand) // 2]
                                                for k in range(3))
                figures.append(absolute(
                    f"scale-out: {count} scorer cop{'y' if count == 1 else 'ies'}, 3 brokers", runs, "rows/s",
                    notes=f"{runs.median / count:,.0f} rows/s per copy; CPU per 1,000 rows: scorers "
                          f"{scorers_s * 1000:,.0f} ms, brokers {brokers_s * 1000:,.0f} ms, load and reader "
                          f"{load_s * 1000:,.0f} ms: a copy with a core of its own would answer ~"
                          f"{1000 / scorers_s:,.0f} rows/s, if the brokers had theirs"))
    return figures
