"""The real parts a scenario plays with: local brokers (one or a cluster) it can kill, mlbus services as
processes it can kill, pause and restart, a producer that records which events the broker acknowledged,
and readers that take everything back with read_committed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.bus import Bus, Event, Publisher, derive_id
from services.bus.acl_admin import apply_access
from services.adapters import declare_log_key
from services.bus.credentials import ADMIN
from services.adapters import publish_batch
from services.bus.envelope import envelope_for
from services.bus.kafka import admin_config, base_config, producer_config
from services.bus.publish import wire_form
from services.bus.replay import read_topics
from services.bus.settings import PROJECT_ROOT
from services.bus.topics import TopicAdmin, consumer_lag, plan_topics
from tests.support.datasets import good, write
from tests.support.people import Cli
from tests.support.polling import wait_until
from tests.support.lag import behind
from tests.support.processes import enrol_if_signing, free_port

from .checker import Sent

KAFKA = PROJECT_ROOT / "scripts" / "kafka"
SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
MODEL = "breast_cancer_lr"
AUTO_POLICY = f"model: {MODEL}\nmetric: roc_auc\nthresholds: {{roc_auc: 0.9}}\nhuman_approval: false\n"


# Services that run under another service's principal have their group under it (services/bus/kafka.py).
GROUPS = {"relay": "mlbus.scorer.relay"}
UNKNOWN_LAG = 10**12        # Stage.lag of a service whose position no running copy reports yet


class Brokers:
    """scripts/kafka's local broker, or a cluster of `nodes`, in its own directory."""

    def __init__(self, root: Path, nodes: int = 1, insecure: bool = False):
        self.root = root
        self.nodes = nodes
        self.insecure = insecure        # plaintext, no ACLs: only to measure what security costs (scripts/bench)
        self.bootstrap = ""

    def start(self) -> str:
        args = ["start", "--dir", str(self.root), "--fresh"] + (["--nodes", str(self.nodes)] if self.nodes > 1 else [])
        self.bootstrap = self._kafka(*args, *(["--insecure"] if self.insecure else [])).splitlines()[-1].removeprefix(
            "bootstrap=")
        if not self.insecure:
            apply_access(Bus.from_env(self.env()))        # the service principals and their credentials
        return self.bootstrap

    @property
    def clients_dir(self) -> Path:
        return self.root / "clients"

    def env(self) -> dict[str, str]:
        return {"MLBUS_BOOTSTRAP": self.bootstrap, "MLBUS_CREDENTIALS_DIR": str(self.clients_dir)}

    def node_dir(self, node: int) -> Path:
        return self.root / f"node-{node}" if self.nodes > 1 else self.root

    def kill(self, node: int = 1) -> None:
        self._kafka("stop", "--dir", str(self.node_dir(node)), "--kill")

    def restart(self, node: int = 1) -> None:
        self._kafka("start", "--dir", str(self.node_dir(node)))

    def stop(self) -> None:
        subprocess.run([sys.executable, str(KAFKA), "stop", "--dir", str(self.root)], capture_output=True)

    def admin(self) -> AdminClient:
        """An admin client over the broker admin's credentials."""
        return AdminClient(admin_config(Bus.from_env(self.env(), principal=ADMIN).settings))

    def leader(self, physical_topic: str, partition: int = 0) -> int:
        admin = self.admin()
        return admin.list_topics(physical_topic, timeout=30).topics[physical_topic].partitions[partition].leader

    def _kafka(self, *args: str) -> str:
        result = subprocess.run([sys.executable, str(KAFKA), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout.strip()

    def __enter__(self) -> "Brokers":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def transaction_coordinator(brokers: Brokers, stage: Stage, service: str) -> int:
    """The node leading the __transaction_state partition of the service's (first copy's) transactional id: Kafka
    places an id at Utils.abs(id.hashCode()) modulo that topic's partitions (Java's String.hashCode, 32-bit)."""
    transactional_id = f"{stage.bus.settings.connection.namespace}{GROUPS.get(service, f'mlbus.{service}')}.0"
    partitions = brokers.admin().list_topics("__transaction_state", timeout=30).topics["__transaction_state"].partitions
    return brokers.leader("__transaction_state", coordinator_partition(transactional_id, len(partitions)))


def coordinator_partition(key: str, partitions: int) -> int:
    """Where Kafka keeps a transactional id's (or a group's) state: Utils.abs(key.hashCode()) % partitions, with
    Java's 32-bit String.hashCode (over UTF-16 units: these ids are ASCII) and Utils.abs(MIN_VALUE) = 0."""
    java_hash = 0
    for char in key:
        java_hash = (31 * java_hash + ord(char)) & 0xFFFFFFFF
    signed = java_hash - (1 << 32) if java_hash >= 1 << 31 else java_hash
    return (0 if signed == -(1 << 31) else abs(signed)) % partitions


def markers_skipped(brokers: Brokers) -> str:
    """The brokers' own words, wherever logged (this start's server.log or the one before), when a transaction
    coordinator dropped a transaction's markers, taking a partition without a leader for a deleted one."""
    found = []
    for node in range(1, brokers.nodes + 1):
        for log in sorted((brokers.node_dir(node) / "logs").glob("server.log*")):
            found += [line[line.find("Couldn't"):][:300] for line in log.read_text(errors="replace").splitlines()
                      if "likely deleted already" in line]
    return " | ".join(found)


@dataclass
class Service:
    name: str
    module: str
    env: dict
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    last_words: list[str] = field(default_factory=list)     # each exit's final log lines (why it stopped)

    @property
    def metrics_port(self) -> int:
        return int(self.env.get("MLBUS_METRICS_PORT", 0))

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", self.module], cwd=PROJECT_ROOT, env=self.env,
                                        stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(30)

    def restart_if_exited(self) -> bool:
        """What a supervisor (mlbus up, systemd, Kubernetes) does: start a crashed service again."""
        if self.process is None or self.alive():
            return False
        self.exits.append(self.process.returncode)
        self.last_words.append(self.final_lines())
        self.restarts += 1
        self.start()
        return True

    def final_lines(self, count: int = 4, width: int = 400) -> str:
        """The log's last lines but the routine ones (a crashed copy's cause, for a scenario's notes)."""
        lines = [line for line in self.log.read_text(errors="replace").splitlines()
                 if line.strip() and '"batch handled"' not in line]
        return " | ".join(line[:width] for line in lines[-count:])

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(30) if self.process else 0

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has had so far."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return kb / 1024


class Stage:
    """One scenario's namespace on the brokers: its topics, var dir, environment and service processes."""

    def __init__(self, brokers: Brokers, workdir: Path, replication: int = 1, prepare: bool = True,
                 audit_shards: int | None = None, **env: str):
        """prepare=False: the namespace's topics, ACLs and log key are left to come (e.g. from `mlbus restore`);
        audit_shards: audit.log made with that many partitions (shards) rather than topics.yaml's."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **brokers.env(), "MLBUS_NAMESPACE": f"c{uuid.uuid4().hex[:8]}.",
                    "MLBUS_VAR": str(workdir / "var"), "MLBUS_LOG_FORMAT": "json", "PYTHONPATH": str(PROJECT_ROOT),
                    "MLBUS_REPLICATION": str(replication), **env}
        self.bus = Bus.from_env(self.env, principal=ADMIN)       # the harness reads and writes as the admin
        if prepare:
            admin = TopicAdmin(self.bus)
            if audit_shards is not None:
                admin.create_with_partitions("audit.log", audit_shards)
            admin.apply(plan_topics(self.bus.catalogue, admin.existing()))
            if not brokers.insecure:
                apply_access(self.bus, principals=False)
            declare_log_key(self.bus)
        self.services: dict[str, Service] = {}
        self._cli = Cli(self.env, prepared=True)

    def start(self, name: str, module: str, **env: str) -> Service:
        # each copy serves /metrics on a port of its own, kept across restarts: Stage.lag reads its positions there
        service = Service(name, module, {**self.env, "MLBUS_METRICS_PORT": str(free_port()), **env},
                          self.workdir / f"{name}.log")
        service.start()
        enrol_if_signing(module, service.env, alive=lambda: service.process.poll() is None)
        self.services[name] = service
        return service

    def supervise(self) -> int:
        """Restart every service that exited; how many were restarted."""
        return sum(service.restart_if_exited() for service in self.services.values())

    def restarts(self) -> dict[str, int]:
        return {name: s.restarts for name, s in self.services.items() if s.restarts}

    def stop_all(self) -> None:
        for service in self.services.values():
            service.stop()

    def cli(self, *args: str, stdin: str | None = None, person: str | None = None) -> subprocess.CompletedProcess:
        """The real mlbus command, as the admin or as one of the people tests act as (tests/support/people.py)."""
        return self._cli(*args, stdin=stdin, person=person, timeout=180)

    def lag(self, service: str, topics: list[str]) -> int:
        """Messages on `topics` the service's running copies (named `service` or `service-…`) have not handled yet:
        the positions they report on /metrics against the broker's end offsets now (tests/support/lag.py) — no
        committed-offset fetch, which waits behind the open transactions of exactly-once load. Every service the
        stage runs is transactional but the scorer in at-least-once mode, whose position is reported once its
        outputs are delivered (its offsets then commit asynchronously, and at a stop). Where the copies' pages do
        not cover every partition (a copy paused, just restarted, killed before its partitions moved on), the
        group's committed offsets answer instead."""
        ports = [copy.metrics_port for name, copy in self.services.items()
                 if (name == service or name.startswith(f"{service}-")) and copy.alive() and copy.metrics_port]
        reported = behind(self.bus, ports, topics) if ports else None
        if reported is not None:
            return reported
        if service == "auditor":
            # Its shards commit in a group each (shard 0's is mlbus.auditor): no one group's offsets answer for it,
            # so until its copies report every partition it is not known to be level (never read as drained).
            return UNKNOWN_LAG
        group = GROUPS.get(service, f"mlbus.{service}")
        return sum(consumer_lag(self.bus, f"{self.bus.settings.connection.namespace}{group}", topics).values())

    def values(self, topic: str) -> list[dict]:
        return [record.value for record in read_topics(self.bus, [topic], timeout_s=300)]

    def raw(self, topic: str) -> list:
        """Every committed message of a catalogue topic (bytes and headers), oldest first per partition."""
        return read_raw(self.bus, self.bus.catalogue.physical(topic))

    @contextmanager
    def running(self) -> Iterator["Stage"]:
        try:
            yield self
        finally:
            self.stop_all()


def read_raw(bus: Bus, physical: str, timeout_s: float = 300) -> list:
    consumer = Consumer({**base_config(bus.settings), "group.id": "chaos-reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(physical, timeout=30).topics[physical].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(physical, p, 0) for p, end in ends.items() if end > 0])
        found, deadline = [], time.monotonic() + timeout_s
        pending = {p for p, end in ends.items() if end > 0}
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if not message.error():
                    found.append(message)
            pending = {p for p in pending
                       if consumer.position([TopicPartition(physical, p)])[0].offset < ends[p]}
        return found
    finally:
        consumer.close()


class TrackedProducer:
    """Publishes events and records, per event id, whether the broker acknowledged it (acks=all)."""

    def __init__(self, bus: Bus, source: str = "chaos-load", **config: object):
        self.bus = bus
        self.producer = Producer({**producer_config(bus.settings, source), **config})
        self.announcer = Publisher(bus, source, self.producer)
        self.sent: list[Sent] = []
        self.acknowledged: set[str] = set()
        self.refused: list[str] = []

    def send(self, event: Event, seq: int, track_id: str | None = None) -> None:
        self.announcer._announce(event.record)
        topic, key, value, headers = wire_form(self.bus, event, envelope_for(event, self.announcer.source, None))
        track = track_id or event.id
        self.sent.append(Sent(track, event.key, seq))

        def delivered(error, _message, track=track):
            if error is None:
                self.acknowledged.add(track)
            else:
                self.refused.append(f"{track}: {error}")

        while True:
            try:
                self.producer.produce(self.bus.catalogue.physical(topic), value=value, key=key, headers=headers,
                                      on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self, timeout: float = 300) -> int:
        """Wait for every answer; how many are still unanswered at the deadline."""
        return self.producer.flush(timeout)


def inference_request(seq: int, model: str = MODEL, prefix: str = "chaos", entities: int = 101) -> Event:
    """The seq-th request; its id carries the sequence number, its key an entity (the partition's order)."""
    row = ROWS[seq % len(ROWS)]
    request_id = f"{prefix}-{seq:07d}"
    entity = f"entity-{seq % entities}"
    return Event("mlbus.InferenceRequest", key=entity, id=derive_id(request_id), subject=request_id, value={
        "request_id": request_id, "entity_id": entity, "model": model, "features": row, "categories": {},
        "sent_at": datetime.now(timezone.utc)})


ROWS = [{k: float(v) for k, v in row.items() if k not in ("id", "diagnosis")}
        for row in good(rows=500, seed=11).to_dict("records")]

CONTROL_PLANE = {"validator": "services.validator", "trainer": "services.trainer", "registry": "services.registry",
                 "deployer": "services.deployer"}


def deploy_model(stage: Stage, keep_running: bool = False) -> dict:
    """The real path to a served model: policy, spec, a good batch → validated, trained, approved by policy,
    deployed. The control-plane services stop afterwards unless keep_running."""
    policy = stage.workdir / "policy.yaml"
    policy.write_text(AUTO_POLICY)
    for person, args in (("lead", ("models", "policy", str(policy))), ("dana", ("models", "define", str(SPEC)))):
        result = stage.cli(*args, person=person)
        if result.returncode != 0:
            raise RuntimeError(f"mlbus {' '.join(args)} failed: {result.stderr}")
    for name, module in CONTROL_PLANE.items():
        stage.start(name, module)
    publish_batch(stage.bus, "breast_cancer", write(good(rows=400), stage.workdir / "good.csv"), "chaos")
    deployed = wait_until(lambda: [d for d in stage.values("deployments") if d["phase"] == "completed"],
                          timeout=240, message="the first deployment")
    if not keep_running:
        for name in CONTROL_PLANE:
            stage.services.pop(name).stop()
    return deployed[0]
