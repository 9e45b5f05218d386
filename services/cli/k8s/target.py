"""Where the rendered base goes: the Kubernetes namespace, the Strimzi cluster, the image (pure)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from services.bus.settings import ConfigError

PART_OF = "mlbus"
TLS_PORT = 9093                 # Strimzi's `tls` listener, where SCRAM-SHA-512 clients connect
INVALID_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")
LABEL_SEPARATORS = re.compile(r"[.-]*\.[.-]*")         # a dot beside a dot or a dash: no empty or dashed label
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")     # an RFC 1123 label
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")          # an RFC 1035 label (a Service's name)


@dataclass(frozen=True)
class Target:
    """The cluster the manifests are for."""

    namespace: str              # the Kubernetes namespace of every resource
    cluster: str                # the Strimzi `Kafka` resource's name (its label on topics and users)
    image: str                  # the mlbus services image (compose/Dockerfile)
    topic_prefix: str = ""      # MLBUS_NAMESPACE: the catalogue's prefix of topics and groups

    def __post_init__(self) -> None:
        # Refused here rather than rendered into manifests a cluster refuses at apply time (no validator offline
        # checks a namespace's or a label's spelling; kustomize writes an empty namespace as none at all).
        if not NAMESPACE_NAME.fullmatch(self.namespace):
            raise ConfigError(f"--namespace {self.namespace!r} is no Kubernetes namespace: 1-63 lower-case "
                              "letters, digits and -, starting and ending with a letter or digit")
        if not SERVICE_NAME.fullmatch(f"{self.cluster}-kafka-bootstrap"):
            raise ConfigError(f"--cluster {self.cluster!r} is no Strimzi Kafka name: lower-case letters, digits "
                              "and -, from a letter, short enough for its Service <cluster>-kafka-bootstrap "
                              "(63 characters)")
        if not self.image or not self.image.isprintable() or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image {self.image!r} is no image reference")

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
    name = LABEL_SEPARATORS.sub(".", INVALID_NAME_CHARS.sub("-", text.lower())).strip(".-")[:253].rstrip(".-")
    if not name:
        raise ConfigError(f"{text!r} makes no Kubernetes object name")
    return name
