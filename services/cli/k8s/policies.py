"""What fences, exposes and scales the services (pure): NetworkPolicies, the console's Service, the KEDA
ScaledObjects that scale the scorer and the auditor copies by their consumer lag, and their disruption budgets."""
from __future__ import annotations

from .target import TLS_PORT, Target, labels, metadata
from .workloads import CONSOLE_PORT, METRICS_PORT, Workload

KEDA_API = "keda.sh/v1alpha1"
PART_OF = {"app.kubernetes.io/part-of": "mlbus"}


def console_service(target: Target) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata("console", "console"),
            "spec": {"selector": labels("console"),
                     "ports": [{"name": "https", "port": CONSOLE_PORT, "targetPort": CONSOLE_PORT}]}}


# Beyond the brokers, two services must reach what lies outside the bus (policies add up): the registry its
# database (PostgreSQL, wherever its URL points) and the notifier its sinks (HTTPS webhooks, SMTP).
OUTSIDE_PORTS = {"registry": [5432], "notifier": [443, 25, 465, 587]}


def network_policies(target: Target) -> list[dict]:
    """Every mlbus pod: nothing in but Prometheus to /metrics; out only to the brokers and DNS (to find them),
    and the registry and the notifier out to their OUTSIDE_PORTS. The console also takes its port from anywhere."""
    def policy(name: str, selector: dict, types: list[str], **rules: list) -> dict:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(name, name),
                "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": types, **rules}}

    brokers = {"podSelector": {"matchLabels": {"strimzi.io/cluster": target.cluster, "strimzi.io/kind": "Kafka"}}}
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    return [policy("mlbus-services", PART_OF, ["Ingress", "Egress"],
                   ingress=[{"from": [prometheus], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
                   egress=[{"to": [brokers], "ports": [{"protocol": "TCP", "port": TLS_PORT}]},
                           {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]),
            policy("mlbus-console", labels("console"), ["Ingress"],
                   ingress=[{"ports": [{"protocol": "TCP", "port": CONSOLE_PORT}]}]),
            *(policy(f"mlbus-{service}-outside", labels(service), ["Egress"],
                     egress=[{"ports": [{"protocol": "TCP", "port": port} for port in ports]}])
              for service, ports in OUTSIDE_PORTS.items())]


def disruption_budget(workload: Workload) -> dict:
    """A drain takes one copy at a time: its partitions (the auditor's: its shards) move to the others."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(workload.name,
                                                                                           workload.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(workload.name)}}}


def scaled_object(workload: Workload, groups: list[str], copies: int, lag_per_copy: int, target: Target) -> dict:
    """KEDA scales the Deployment between 1 and `copies` (more would stand idle: no partition or shard left
    for them) by the lag of the service's consumer groups (one trigger each; the busiest decides). A group's
    partitions with no committed offset count no lag (scaleToZeroOnInvalidOffset; KEDA v2.20's kafka scaler
    counts 1, or the whole partition with `earliest`): an auditor shard's group commits only its own share of
    each topic's partitions, and minReplicaCount keeps one copy whatever the lag."""
    triggers = [{"type": "kafka", "name": group.replace(".", "-"),
                 "metadata": {"bootstrapServers": target.bootstrap, "consumerGroup": group,
                              "lagThreshold": str(lag_per_copy), "scaleToZeroOnInvalidOffset": "true",
                              "sasl": "scram_sha512", "tls": "enable"},
                 "authenticationRef": {"name": workload.name}} for group in groups]
    return {"apiVersion": KEDA_API, "kind": "ScaledObject", "metadata": metadata(workload.name, workload.name),
            "spec": {"scaleTargetRef": {"name": workload.name}, "minReplicaCount": 1, "maxReplicaCount": copies,
                     "triggers": triggers}}


def trigger_authentication(workload: Workload, target: Target) -> dict:
    """KEDA reads the groups' lag as the service's own principal (READ on its groups and topics lets it describe
    them): the password from Strimzi's Secret, the user name from the container, the cluster CA."""
    return {"apiVersion": KEDA_API, "kind": "TriggerAuthentication", "metadata": metadata(workload.name,
                                                                                           workload.name),
            "spec": {"secretTargetRef": [{"parameter": "password", "name": workload.name, "key": "password"},
                                         {"parameter": "ca", "name": target.ca_secret, "key": "ca.crt"}],
                     "env": [{"parameter": "username", "name": "MLBUS_KAFKA_SASL_USERNAME",
                              "containerName": workload.name}]}}
