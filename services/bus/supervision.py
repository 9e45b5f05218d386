"""Where `mlbus up` keeps its services' processes on this machine (pid files under var/run/<namespace>/, one
keep-alive per service) and what they tell with the consumer groups' lag: the rows `mlbus status` prints and the
console's overview shows."""
from __future__ import annotations

import os
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from .context import Bus
from .kafka import admin_config
from .settings import PROJECT_ROOT
from .topics import committed_topics, running_lag, service_group

# mlbus's services → their modules. `up` starts those that exist; NAME=MODULE adds one of your own.
SERVICES = {"validator": "services.validator", "trainer": "services.trainer", "registry": "services.registry",
            "deployer": "services.deployer", "scorer": "services.scorer",
            "drift-watcher": "services.drift_watcher",
            "auditor": "services.auditor", "notifier": "services.notifier",
            "featurizer": "services.featurizer", "witness": "services.witness",
            "console": "services.console"}


def available_services() -> dict[str, str]:
    return {name: module for name, module in SERVICES.items() if module_exists(module)}


def module_exists(module: str) -> bool:
    path = PROJECT_ROOT / module.replace(".", "/")
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists()


# Services `mlbus up --auditors N` runs in copies: the auditor's copies share audit.log's shards (a group).
SCALED = ("auditor",)


def copy_name(service: str, copy: int) -> str:
    """The name `up` gives a service's copy-th copy (from 1): the service's own for the first, so one copy is
    what it always was, else `service-copy` (auditor-2)."""
    return service if copy == 1 else f"{service}-{copy}"


def copy_of(name: str) -> tuple[str, int]:
    """(service, copy) of a name `up` knows: auditor-2 → (auditor, 2); any other name is its own first copy."""
    service, _, copy = name.rpartition("-")
    if service in SCALED and copy.isdigit() and int(copy) > 1:
        return service, int(copy)
    return name, 1


def metrics_port(bus: Bus, name: str) -> int:
    """Where `mlbus up` has a service serve its Prometheus metrics: the base port + its place in SERVICES, and
    a scaled service's further copies the ports after them (auditor-2 at base + 9); 0 for the console (a web
    page, not a consumer), the witness (no runtime: its log says what it co-signed) and for services of your own
    (set MLBUS_METRICS_PORT for them)."""
    names = [n for n in SERVICES if n not in ("console", "witness")]
    service, copy = copy_of(name)
    if service not in names:
        return 0
    base = bus.settings.observability.metrics_base_port
    return base + names.index(service) if copy == 1 else base + len(names) + copy - 2


def service_rows(bus: Bus, owners: dict | None = None) -> list[dict]:
    """Each service `up` knows: running or not, its pid, restarts since `up`, its consumer lag with where the
    figure came from (lag_source: "metrics", its own /metrics; "committed", its group's committed offsets) and,
    for an auditor copy, the audit.log shards the group gives it (None: not a sharded service, or not known),
    with the whole group (shard_owners) on the first copy's row; `owners` is shard_owners' answer if the caller
    has it already."""
    if owners is None and any(copy_of(name)[0] in SCALED for name in known_names(bus)):
        owners = shard_owners(bus)
    rows = []
    for name in sorted(set(available_services()) | set(known_names(bus))):
        pid = running_pid(pid_file(bus, name))
        service = copy_of(name)[0]
        group = service_group(bus, service) if pid else f"{bus.settings.connection.namespace}mlbus.{service}"
        topics = [t.name for t in bus.catalogue.consumed_by(service)] or committed_topics(bus, group)
        lag, source = running_lag(bus, group, topics, metrics_port(bus, name)) if pid else ({}, "-")
        restarts = Path(restarts_file(str(child_pid_file(bus, name))))
        rows.append({"service": name, "state": "running" if pid else "stopped", "pid": pid,
                     "service_pid": running_pid(child_pid_file(bus, name)),
                     "restarts": int(restarts.read_text()) if pid and restarts.exists() else 0,
                     "lag": sum(lag.values()) if lag else None,      # None: not known yet (nothing committed)
                     "lag_by_topic": lag, "lag_source": source if lag else "-",
                     "metrics": f"http://127.0.0.1:{port}/metrics"
                     if pid and (port := metrics_port(bus, name)) else "-",
                     "shards": copy_shards(owners, name) if pid and owners else None,
                     "shard_group": owners if pid and owners and name in SCALED else None})
    return rows


SHARDS_GROUP = "mlbus.auditor.shards"       # every auditor copy's membership group on audit.log (its shards)
DESCRIBE_S = 5.0                            # a broker that does not answer makes status say so, not wait


def shard_owners(bus: Bus) -> dict:
    """Which auditor copy runs which of audit.log's shards: the members of the group `<ns>mlbus.auditor.shards`
    and the audit.log partitions each is assigned (a copy runs exactly those), and the shards no copy runs.
    A copy is named by its client id, `auditor-shards-<MLBUS_INSTANCE>`; {"error": ...} when the broker does
    not answer within DESCRIBE_S."""
    group = f"{bus.settings.connection.namespace}{SHARDS_GROUP}"
    physical = bus.catalogue.physical("audit.log")
    admin = AdminClient(admin_config(bus.settings))      # kept in a name: a collected client cancels its futures
    try:
        topic = admin.list_topics(physical, timeout=DESCRIBE_S).topics.get(physical)
        described = admin.describe_consumer_groups([group], request_timeout=DESCRIBE_S)[group].result(
            timeout=DESCRIBE_S + 1)
    except (KafkaException, FutureTimeout) as error:
        return {"group": group, "error": f"{type(error).__name__}: {error}" if str(error) else type(error).__name__}
    shards = len(topic.partitions) if topic is not None and topic.error is None else 0
    members = [{"copy": member_copy(member.client_id), "client_id": member.client_id, "host": member.host,
                "shards": sorted(tp.partition for tp in (member.assignment.topic_partitions if member.assignment
                                                          else []) if tp.topic == physical)}
               for member in described.members]
    members.sort(key=lambda member: (member["shards"][:1] or [shards], member["client_id"]))
    run = {shard for member in members for shard in member["shards"]}
    return {"group": group, "shards": shards, "members": members,
            "unassigned": sorted(set(range(shards)) - run)}


def member_copy(client_id: str) -> str | None:
    """The copy `up` runs behind a member of the shards group: its client id is auditor-shards-<MLBUS_INSTANCE>
    and `up` gives copy k the instance k (None: a copy started otherwise, e.g. by hand with instance 0)."""
    instance = client_id.removeprefix("auditor-shards-")
    return copy_name("auditor", int(instance)) if instance != client_id and instance.isdigit() \
        and int(instance) >= 1 else None


def copy_shards(owners: dict, name: str) -> list[int] | None:
    """The shards the group gives this copy `up` runs, None if not known."""
    if copy_of(name)[0] not in SCALED or "error" in owners:
        return None
    return sorted(shard for member in owners["members"] if member["copy"] == name for shard in member["shards"])


def run_dir(bus: Bus) -> Path:
    """Pid files of one namespace's services: var/run/<namespace>/."""
    path = bus.settings.storage.var_dir / "run" / (bus.settings.connection.namespace.rstrip(".") or "default")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file(bus: Bus, name: str) -> Path:
    """The keep-alive's pid: signalling it stops the service it watches."""
    return run_dir(bus) / f"{name}.pid"


def child_pid_file(bus: Bus, name: str) -> Path:
    return run_dir(bus) / f"{name}.service"


def known_names(bus: Bus) -> list[str]:
    """Every service `up` has started in this namespace (mlbus's own and the user's), running or not."""
    return sorted(p.stem for p in run_dir(bus).glob("*.module"))


def running_pid(path: Path) -> int | None:
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split()[2] == "Z":
        return None
    return pid


def restarts_file(child_pid_file: str) -> str:
    """Where a service's keep-alive counts its restarts: beside the service's pid file."""
    return os.path.splitext(child_pid_file)[0] + ".restarts"
