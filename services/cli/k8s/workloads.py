"""Each service as a Deployment with its own Secret, its probes and its resources (pure). What a service needs is
what compose/docker-compose.yml gives it: its broker credentials and keys only, shared data where it reads
snapshots or artifacts, and a persistent state directory where it keeps a key it made at its first start."""
from __future__ import annotations

from dataclasses import dataclass

from .target import Target, labels, metadata

METRICS_PORT = 9400             # every runtime's /metrics (MLBUS_METRICS_PORT): one pod, one port
CONSOLE_PORT = 8080             # the console's HTTPS
UID = 10001                     # not root: the image needs to write only its volumes
CA_DIR, SECRETS_DIR = "/etc/mlbus/kafka-ca", "/secrets"
DATABASE_URL = "database-url"   # the registry's PostgreSQL URL, password included: a file of its Secret


@dataclass(frozen=True)
class Workload:
    """What Kubernetes must know of one service to run it."""

    name: str                           # the service, its principal and its Deployment
    module: str                         # python -m MODULE
    probe: str | None = "/metrics"      # what it serves for probes: /metrics, the console's /healthz, or nothing
    files: tuple[str, ...] = ()         # its own Secret's files, provided by whoever applies the base
    shared_data: bool = False           # reads data snapshots or model artifacts (MLBUS_DATA, MLBUS_ARTIFACTS)
    keeps_state: bool = False           # a key made at its first start in its state directory: a volume claim
    scaled: bool = False                # copies share its consumer groups' partitions (KEDA scales them)
    cpu: str = "100m"
    memory: str = "256Mi"
    memory_limit: str = "1Gi"
    args: tuple[str, ...] = ()

    @property
    def secret(self) -> str:
        return f"mlbus-{self.name}"

    @property
    def mounted_files(self) -> list[str]:
        """Its key files read as files (the registry's database URL is read as a variable)."""
        return [f for f in self.files if f != DATABASE_URL]

    def environment(self) -> dict[str, str]:
        """The settings this service reads beyond the broker's (services/bus/settings.py)."""
        return {**({"MLBUS_METRICS_PORT": str(METRICS_PORT), "MLBUS_METRICS_HOST": "0.0.0.0"}
                   if self.probe == "/metrics" else {}), **SERVICE_ENVIRONMENT.get(self.name, {})}


# Where a service's own files land: MLBUS_AUDIT_KEY, the console's certificate beside the (empty) credentials
# directory (services/console/tls.py: <MLBUS_CREDENTIALS_DIR>/../tls), the notifier's sinks and routes.
SERVICE_ENVIRONMENT = {"auditor": {"MLBUS_AUDIT_KEY": f"{SECRETS_DIR}/auditor.ed25519",
                                   "MLBUS_AUDIT_ANCHOR": "/anchor"},
                       "notifier": {"MLBUS_NOTIFIER_CONFIG": f"{SECRETS_DIR}/notifier.yaml"}}
FILE_MOUNTS = {"console": f"{SECRETS_DIR}/tls"}


def deployment(workload: Workload, target: Target) -> dict:
    """The service's Deployment: one container, its Secret and the broker's CA mounted read-only."""
    spec: dict = {"selector": {"matchLabels": labels(workload.name)},
                  "template": {"metadata": {"labels": labels(workload.name)}, "spec": pod_spec(workload, target)}}
    if not workload.scaled:
        # One copy: its consumer groups' partitions all go to it, and a state claim can be mounted only once.
        spec.update(replicas=1, strategy={"type": "Recreate"})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(workload.name, workload.name),
            "spec": spec}


def pod_spec(workload: Workload, target: Target) -> dict:
    return {"securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "automountServiceAccountToken": False,
            "containers": [container(workload, target)], "volumes": volumes(workload, target)}


def container(workload: Workload, target: Target) -> dict:
    found = {"name": workload.name, "image": target.image, "command": ["python", "-m", workload.module,
                                                                       *workload.args],
             "env": environment(workload, target), "volumeMounts": volume_mounts(workload, target),
             "resources": {"requests": {"cpu": workload.cpu, "memory": workload.memory},
                           "limits": {"memory": workload.memory_limit}},
             "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                 "capabilities": {"drop": ["ALL"]}}}
    if workload.probe is not None:
        port = METRICS_PORT if workload.probe == "/metrics" else CONSOLE_PORT
        found["ports"] = [{"name": "metrics" if port == METRICS_PORT else "https", "containerPort": port}]
        found.update(probes(workload.probe, port))
    return found


def probes(path: str, port: int) -> dict:
    """Ready while it serves the page; restarted when it stops answering for a minute (compose's health check:
    every 15 s, 4 retries, 60 s to start)."""
    get = {"path": path, "port": port, "scheme": "HTTPS" if port == CONSOLE_PORT else "HTTP"}
    return {"readinessProbe": {"httpGet": get, "periodSeconds": 15, "timeoutSeconds": 5},
            "livenessProbe": {"httpGet": get, "initialDelaySeconds": 60, "periodSeconds": 15, "timeoutSeconds": 5,
                              "failureThreshold": 4}}


def environment(workload: Workload, target: Target) -> list[dict]:
    """Broker settings as MLBUS_KAFKA_* (librdkafka properties): the principal's own user name and password."""
    plain = {"MLBUS_BOOTSTRAP": target.bootstrap, "MLBUS_CREDENTIALS_DIR": f"{SECRETS_DIR}/clients",
             "MLBUS_VAR": "/var/mlbus", "MLBUS_DATA": "/shared/data", "MLBUS_ARTIFACTS": "/shared/artifacts",
             "MLBUS_LOG_FORMAT": "json", "MLBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
             "MLBUS_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512", "MLBUS_KAFKA_SASL_USERNAME": workload.name,
             "MLBUS_KAFKA_SSL_CA_LOCATION": f"{CA_DIR}/ca.crt",
             **({"MLBUS_NAMESPACE": target.topic_prefix} if target.topic_prefix else {}), **workload.environment()}
    found: list[dict] = [{"name": name, "value": value} for name, value in plain.items()]
    found.append(secret_env("MLBUS_KAFKA_SASL_PASSWORD", workload.name, "password"))   # Strimzi's: the user's
    if DATABASE_URL in workload.files:
        found.append(secret_env("MLBUS_DATABASE_URL", workload.secret, DATABASE_URL))
    if workload.scaled:     # each copy its own transactional ids and client ids
        found.append({"name": "MLBUS_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return found


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def volume_mounts(workload: Workload, target: Target) -> list[dict]:
    return [{"name": volume["name"], **mount} for volume, mount in storage(workload, target)]


def volumes(workload: Workload, target: Target) -> list[dict]:
    return [volume for volume, _ in storage(workload, target)]


def storage(workload: Workload, target: Target) -> list[tuple[dict, dict]]:
    """(volume, where it is mounted): the cluster CA, its state (a claim where it keeps a key), its key files
    (group-readable: the pod's fsGroup), the shared data, the auditor's anchor."""
    state: dict = ({"persistentVolumeClaim": {"claimName": state_claim(workload)}} if workload.keeps_state
                   else {"emptyDir": {}})
    ca = {"secretName": target.ca_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    found: list[tuple[dict, dict]] = [({"name": "kafka-ca", "secret": ca}, {"mountPath": CA_DIR, "readOnly": True}),
                                      ({"name": "var", **state}, {"mountPath": "/var/mlbus"}),
                                      ({"name": "tmp", "emptyDir": {}}, {"mountPath": "/tmp"})]
    if workload.mounted_files:
        found.append(({"name": "own-secret", "secret": {"secretName": workload.secret, "defaultMode": 0o440,
                                                        "items": [{"key": f, "path": f}
                                                                  for f in workload.mounted_files]}},
                      {"mountPath": FILE_MOUNTS.get(workload.name, SECRETS_DIR), "readOnly": True}))
    if workload.shared_data:
        found.append(({"name": "shared", "persistentVolumeClaim": {"claimName": SHARED_CLAIM}},
                      {"mountPath": "/shared"}))
    if workload.name == "auditor":
        found.append(({"name": "anchor", "persistentVolumeClaim": {"claimName": ANCHOR_CLAIM}},
                      {"mountPath": "/anchor"}))
    return found


SHARED_CLAIM, ANCHOR_CLAIM = "mlbus-shared", "mlbus-audit-anchor"


def state_claim(workload: Workload) -> str:
    return f"mlbus-{workload.name}-state"


def claim(name: str, component: str, access: str, size: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(name, component),
            "spec": {"accessModes": [access], "resources": {"requests": {"storage": size}}}}


def claims(workloads: list[Workload]) -> list[dict]:
    """The state of the services that keep a key, the shared data, and the audit anchor (several copies of
    the auditor write it: ReadWriteMany, or point MLBUS_AUDIT_ANCHOR at an object store)."""
    found = [claim(state_claim(w), w.name, "ReadWriteOnce", "1Gi") for w in workloads if w.keeps_state]
    if any(w.shared_data for w in workloads):
        found.append(claim(SHARED_CLAIM, "shared", "ReadWriteMany", "20Gi"))
    if any(w.name == "auditor" for w in workloads):
        found.append(claim(ANCHOR_CLAIM, "auditor", "ReadWriteMany", "1Gi"))
    return found


def secret_generator(workload: Workload) -> dict:
    """Its own Secret of its keys, for kustomize to make from the files that whoever applies the base puts
    under secrets/<service>/: nothing secret is rendered, and kustomize refuses to build while one is missing.
    (Its broker password is in the Secret Strimzi's User Operator makes for its KafkaUser, of its name.)"""
    return {"name": workload.secret, "files": [f"{f}=secrets/{workload.name}/{f}" for f in workload.files]}
