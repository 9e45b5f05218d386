"""Strimzi resources (kafka.strimzi.io/v1): a KafkaTopic per catalogue topic and a KafkaUser per principal with
the ACLs services/bus/access.py derives (pure). Strimzi's Topic and User Operators make them on the cluster."""
from __future__ import annotations

from itertools import groupby
from typing import Iterable

from services.bus.access import Grant
from services.bus.catalogue import Catalogue, Topic
from services.bus.settings import ConfigError

from .target import Target, metadata, resource_name

API_VERSION = "kafka.strimzi.io/v1"
RESOURCE_TYPES = {"topic": "topic", "group": "group", "transactional_id": "transactionalId", "cluster": "cluster"}
PATTERN_TYPES = {"literal": "literal", "prefixed": "prefix"}
SCRAM = "scram-sha-512"


def kafka_topic(catalogue: Catalogue, topic: Topic, target: Target) -> dict:
    """The topic as topics.yaml makes it: its physical name, partitions, replicas and configs; with three replicas
    or more, min.insync.replicas 2 unless topics.yaml says (an acknowledged event on two, and an ISR never
    shrunk to a lone leader whose stop leaves the partition leaderless)."""
    physical = catalogue.physical(topic.name)
    config = dict(topic.config)
    if topic.replication >= 3:
        config.setdefault("min.insync.replicas", "2")
    return {"apiVersion": API_VERSION, "kind": "KafkaTopic",
            "metadata": metadata(resource_name(physical), "topics", **{"strimzi.io/cluster": target.cluster}),
            "spec": {"topicName": physical, "partitions": topic.partitions, "replicas": topic.replication,
                     "config": dict(sorted(config.items()))}}


def kafka_user(principal: str, grants: Iterable[Grant], target: Target) -> dict:
    """A SCRAM-SHA-512 user (Strimzi makes its password, in a Secret of the user's name) with exactly these
    ACLs; no `authorization` at all for a principal with none (the broker's super user)."""
    spec: dict = {"authentication": {"type": SCRAM}}
    acls = strimzi_acls(grants)
    if acls:
        spec["authorization"] = {"type": "simple", "acls": acls}
    return {"apiVersion": API_VERSION, "kind": "KafkaUser",
            "metadata": metadata(user_name(principal), "users", **{"strimzi.io/cluster": target.cluster}),
            "spec": spec}


def user_name(principal: str) -> str:
    """The KafkaUser's name: the principal itself, since Strimzi makes the broker's user name of it — a principal
    Kubernetes cannot spell (capitals, `_`, ...) would connect as another name than the one its ACLs are for."""
    if resource_name(principal) != principal:
        raise ConfigError(f"principal {principal!r} cannot be a Strimzi KafkaUser: Strimzi names the broker's user "
                          "after the resource, and a Kubernetes name takes only lower-case letters, digits, - and . "
                          f"(it would connect as {resource_name(principal)!r}, which `mlbus acl plan` grants nothing)")
    return principal


def strimzi_acls(grants: Iterable[Grant]) -> list[dict]:
    """One ACL per resource, with every operation granted on it (Strimzi's `operations`), in a stable order."""
    def resource(grant: Grant) -> tuple[str, str, str]:
        return grant.resource, grant.name, grant.pattern

    ordered = sorted(grants, key=lambda g: (resource(g), g.operation))
    return [{"type": "allow", "resource": strimzi_resource(*key), "host": "*",
             "operations": [operation_name(g.operation) for g in same]}
            for key, same in ((key, list(group)) for key, group in groupby(ordered, key=resource))]


def strimzi_resource(kind: str, name: str, pattern: str) -> dict:
    """access.py's resource in Strimzi's terms: the cluster has no name (access.py calls it kafka-cluster)."""
    if kind == "cluster":
        return {"type": "cluster"}
    return {"type": RESOURCE_TYPES[kind], "name": name, "patternType": PATTERN_TYPES[pattern]}


def operation_name(operation: str) -> str:
    """idempotent_write → IdempotentWrite: Kafka's operation names, as Strimzi spells them."""
    return "".join(word.title() for word in operation.split("_"))
