"""The kustomize base (pure): catalogue + principals + services → {file: manifests} and its kustomization."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from services.bus.access import plan_acls, service_principals
from services.bus.catalogue import Catalogue
from services.bus.credentials import ADMIN
from services.bus.settings import ConfigError
from services.domain import shard_group

from .policies import console_service, disruption_budget, network_policies, scaled_object, trigger_authentication
from .strimzi import kafka_topic, kafka_user
from .target import Target
from .workloads import DATABASE_URL, Workload, claims, deployment, secret_generator

# What each of mlbus's services (services/bus/supervision.py SERVICES) needs beyond the defaults; a test keeps
# the two lists equal. Requests are starting points, not measurements: nothing here ran on a cluster.
WORKLOAD_FACTS: dict[str, dict] = {
    "validator": {"shared_data": True},
    "trainer": {"shared_data": True, "keeps_state": True, "cpu": "500m", "memory": "1Gi", "memory_limit": "4Gi"},
    "registry": {"files": (DATABASE_URL,)},           # its database: PostgreSQL (docs/how-to/postgres-s3.md)
    "deployer": {"shared_data": True},
    "scorer": {"shared_data": True, "scaled": True, "cpu": "250m", "memory": "512Mi", "memory_limit": "2Gi"},
    "drift-watcher": {"keeps_state": True, "memory": "512Mi", "memory_limit": "2Gi"},
    "featurizer": {"shared_data": True, "keeps_state": True, "memory": "512Mi", "memory_limit": "2Gi"},  # stores
    "auditor": {"files": ("auditor.ed25519",), "scaled": True, "cpu": "250m", "memory": "512Mi",
                "memory_limit": "2Gi"},
    "notifier": {"files": ("notifier.yaml",)},
    "witness": {"keeps_state": True, "probe": None},    # no runtime, nothing served: its log says what it signs
    "console": {"probe": "/healthz", "files": ("console.crt", "console.key"), "shared_data": True,
                "cpu": "200m", "memory": "512Mi", "memory_limit": "2Gi",
                "args": ("--host", "0.0.0.0", "--port", "8080")},
}
# Consumer lag per copy before KEDA adds one: the auditor commits batches of up to 5,000 records
# (services/auditor/__main__.py); the scorer answers requests one by one, so a smaller backlog already waits.
LAG_PER_COPY = {"scorer": 1000, "auditor": 5000}


@dataclass(frozen=True)
class Base:
    files: Mapping[str, list[dict]]         # file name → its manifests
    kustomization: dict


def workloads(services: Mapping[str, str]) -> list[Workload]:
    """The services (name → module) as workloads, each with its facts."""
    unknown = sorted(set(services) - set(WORKLOAD_FACTS))
    if unknown:
        raise ConfigError(f"no Kubernetes facts for {', '.join(unknown)} (services/cli/k8s/render.py)")
    return [Workload(name, module, **WORKLOAD_FACTS[name]) for name, module in services.items()]


def render(catalogue: Catalogue, people: Mapping[str, list[str]], services: list[Workload], target: Target) -> Base:
    """Every manifest of the base, by file, and the kustomization that lists them and makes the Secrets."""
    taken = sorted({*service_principals(catalogue), ADMIN} & set(people))
    if taken:       # one KafkaUser, one password: the person would act with the service's rights, and it with theirs
        raise ConfigError(f"{', '.join(taken)}: the name of a service or of the broker's admin, not a person's")
    grants = plan_acls(catalogue, people)
    principals = [*service_principals(catalogue), *people, ADMIN]
    scaled = [w for w in services if w.scaled]
    files = {
        "kafka-topics.yaml": [kafka_topic(catalogue, t, target) for t in catalogue],
        "kafka-users.yaml": [kafka_user(p, {g for g in grants if g.principal == p}, target) for p in principals],
        "deployments.yaml": [deployment(w, target) for w in services],
        "storage.yaml": claims(services),
        "network.yaml": [*network_policies(target), *([console_service(target)]
                                                      if any(w.name == "console" for w in services) else [])],
        "scaling.yaml": [m for w in scaled for m in (trigger_authentication(w, target),
                                                     scaled_object(w, *scaling(w, catalogue), target),
                                                     disruption_budget(w))],
    }
    files = {name: manifests for name, manifests in files.items() if manifests}
    refuse_same_names(files)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "namespace": target.namespace, "resources": list(files),
                     "secretGenerator": [secret_generator(w) for w in services if w.files]}
    return Base(files, kustomization)


def refuse_same_names(files: Mapping[str, list[dict]]) -> None:
    """Two objects of a kind with one name (topics a_b and a-b, people Ana and ana) are one object to Kubernetes:
    refused, rather than one silently standing for both or a base that kustomize will not build."""
    seen: dict[tuple[str, str], int] = {}
    for manifest in (m for manifests in files.values() for m in manifests):
        key = (manifest["kind"], manifest["metadata"]["name"])
        seen[key] = seen.get(key, 0) + 1
    doubles = [f"{kind} {name}" for (kind, name), count in seen.items() if count > 1]
    if doubles:
        raise ConfigError(f"two objects would have the same name: {', '.join(doubles)} (rename one in topics.yaml "
                          "or among the people)")


def scaling(workload: Workload, catalogue: Catalogue) -> tuple[list[str], int, int]:
    """(consumer groups, most copies worth running, lag per copy): the scorer's group and its inputs' largest
    partition count; the auditor's shard groups and audit.log's shards (services/domain/shards.py)."""
    group = f"{catalogue.namespace}mlbus.{workload.name}"
    lag = LAG_PER_COPY.get(workload.name, 1000)
    if workload.name == "auditor":
        shards = catalogue["audit.log"].partitions
        return [shard_group(group, shard) for shard in range(shards)], shards, lag
    inputs = catalogue.consumed_by(workload.name)
    return [group], max((t.partitions for t in inputs), default=1), lag
