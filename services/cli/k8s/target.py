"""Where the rendered base goes: the Kubernetes namespace, the Strimzi cluster, the image (pure)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from services.bus.settings import ConfigError

PART_OF = "mlbus"
TLS_PORT = 9093                 # Strimzi's `tls` listener, where SCRAM-SHA-512 clients connect
INVALID_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class Target:
    """The cluster the manifests are for."""

    namespace: str              # the Kubernetes namespace of every resource
    cluster: str                # the Strimzi `Kafka` resource's name (its label on topics and users)
    image: str                  # the mlbus services image (compose/Dockerfile)
    topic_prefix: str = ""      # MLBUS_NAMESPACE: the catalogue's prefix of topics and groups

    @property
    def bootstrap(self) -> str:
        """Strimzi's bootstrap Service of the cluster's TLS listener."""
        return f"{self.cluster}-kafka-bootstrap:{TLS_PORT}"

    @property
    def ca_secret(self) -> str:
        """The Secret Strimzi keeps the cluster CA's certificate in (`ca.crt`): public, what clients trust."""
        return f"{self.cluster}-cluster-ca-cert"


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def metadata(name: str, component: str, **extra_labels: str) -> dict:
    return {"name": name, "labels": {**labels(component), **extra_labels}}


def resource_name(text: str) -> str:
    """A Kubernetes object name (RFC 1123 subdomain) for a topic or principal: lower case, `-` for the rest."""
    name = INVALID_NAME_CHARS.sub("-", text.lower()).strip(".-")
    if not name:
        raise ConfigError(f"{text!r} makes no Kubernetes object name")
    return name[:253]
