"""Settings read once from the environment into a frozen object of a few sections; secrets never print."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KAFKA_PREFIX = "MLBUS_KAFKA_"
SECRET_WORDS = ("password", "secret", "token", "key")


class Secret(str):
    """A string that shows as ****** in reprs and logs; str(secret) stays the real value for clients."""

    def __repr__(self) -> str:
        return "Secret('******')"


class ConfigError(RuntimeError):
    """The environment does not say enough to run (e.g. no broker): a usage error, exit 2."""


# Each section reads its own MLBUS_* variables in its from_env, as one cls(...) call: docs/_ext/
# reference_operations.py reads the variable of every field from that call, and its meaning from the comment on
# the field's line.

@dataclass(frozen=True)
class ConnectionSettings:
    """The broker: where it is, the topics' namespace, and the credentials this process connects with."""

    bootstrap_env: str | None           # MLBUS_BOOTSTRAP: an existing Kafka cluster (host:port,...); unset: the
                                        # local broker scripts/kafka started
    namespace: str                      # MLBUS_NAMESPACE: prefix of every physical topic and consumer group
                                        # (tenants, tests)
    replication: int | None             # MLBUS_REPLICATION: replication factor of every topic (a real cluster: 3);
                                        # unset: topics.yaml's
    kafka_overrides: Mapping[str, str]  # any librdkafka property: MLBUS_KAFKA_SASL_PASSWORD sets sasl.password
                                        # (kept secret in logs); it overrides what mlbus sets itself
    principal: str                      # MLBUS_PRINCIPAL: whose broker credentials this process uses
    kafka_clients_dir: Path             # MLBUS_CREDENTIALS_DIR: <principal>.properties files (scripts/kafka,
                                        # mlbus acl apply)
    wire: str = "single-object"         # MLBUS_WIRE: how every topic is framed unless topics.yaml says (`wire:`):
                                        # single-object (Avro single-object encoding) or confluent (00 + a
                                        # schema registry's id: what Kafka Connect, ksqlDB, Flink read)
    registry_url: str = ""              # MLBUS_REGISTRY_URL: a schema registry's Confluent-compatible API
                                        # (Apicurio: http://host:port/apis/ccompat/v7); scripts/registry starts one
    identity_principal: str = ""        # the person the CLI acts as (identity file), and their broker credentials
    identity_kafka: Mapping[str, str] | None = None     # the broker credentials of the person the CLI acts as
                                                        # (from their identity file)

    @classmethod
    def from_env(cls, env: Mapping[str, str], var_dir: Path) -> "ConnectionSettings":
        replication = env.get("MLBUS_REPLICATION")
        return cls(
            bootstrap_env=env.get("MLBUS_BOOTSTRAP") or None,
            namespace=env.get("MLBUS_NAMESPACE", ""),
            replication=int(replication) if replication else None,
            kafka_overrides=kafka_overrides(env),
            principal=env.get("MLBUS_PRINCIPAL", ""),
            kafka_clients_dir=Path(env.get("MLBUS_CREDENTIALS_DIR", var_dir / "kafka" / "clients")),
            wire=choice(env, "MLBUS_WIRE", ("single-object", "confluent")),
            registry_url=env.get("MLBUS_REGISTRY_URL", "").rstrip("/"),
        )

    @property
    def client_principal(self) -> str:
        """The principal this process connects as: a service's own name, `admin` for the CLI, else `app`."""
        return self.principal or "app"

    def secret_values(self) -> list[str]:
        return [str(v) for v in self.kafka_overrides.values() if isinstance(v, Secret)]


@dataclass(frozen=True)
class StorageSettings:
    """Where things are kept: the project, local state, the registry's database, data snapshots and artifacts."""

    home: Path                  # MLBUS_HOME: the project's root: topics.yaml and schemas/ are read from here
    var_dir: Path               # MLBUS_VAR: local state: broker, logs, pids, database, data, artifacts, keys
    database_url: str           # MLBUS_DATABASE_URL: the registry's database, any SQLAlchemy URL (SQLite or
                                # PostgreSQL); kept secret in logs
    data_store: str             # MLBUS_DATA: data snapshots, a folder or an fsspec URL (s3://bucket/data)
    artifacts_store: str        # MLBUS_ARTIFACTS: model artifacts, likewise
    contracts_dir: Path         # MLBUS_CONTRACTS: the data contracts' folder (one Avro record schema per dataset)
    max_snapshot_bytes: int     # MLBUS_MAX_SNAPSHOT_BYTES: a data file (and its decompressed columns)
    max_artifact_bytes: int     # MLBUS_MAX_ARTIFACT_BYTES: a model file
    features_database_url: str  # MLBUS_FEATURES_DATABASE_URL: the featurizer's online store (SQLAlchemy URL)
    features_offline: Path      # MLBUS_FEATURES_OFFLINE: the offline store, Parquet files of every feature value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "StorageSettings":
        home = Path(env.get("MLBUS_HOME", PROJECT_ROOT))
        var_dir = Path(env.get("MLBUS_VAR", home / "var"))
        return cls(
            home=home,
            var_dir=var_dir,
            database_url=Secret(env.get("MLBUS_DATABASE_URL", f"sqlite:///{var_dir / 'mlbus.db'}")),   # a password
            data_store=env.get("MLBUS_DATA") or str(var_dir / "data"),
            artifacts_store=env.get("MLBUS_ARTIFACTS") or str(var_dir / "artifacts"),
            contracts_dir=Path(env.get("MLBUS_CONTRACTS", home / "schemas" / "datasets")),
            max_snapshot_bytes=positive_int(env, "MLBUS_MAX_SNAPSHOT_BYTES", 1 << 30),
            max_artifact_bytes=positive_int(env, "MLBUS_MAX_ARTIFACT_BYTES", 1 << 29),
            features_database_url=Secret(env.get("MLBUS_FEATURES_DATABASE_URL",
                                                 f"sqlite:///{var_dir / 'features.db'}")),
            features_offline=Path(env.get("MLBUS_FEATURES_OFFLINE", var_dir / "features" / "offline")),
        )

    @property
    def schemas_dir(self) -> Path:
        return self.home / "schemas"

    @property
    def topics_file(self) -> Path:
        return self.home / "topics.yaml"


@dataclass(frozen=True)
class RuntimeSettings:
    """How a service's process runs: which copy it is, and how it treats a message that crashes it."""

    instance: str               # MLBUS_INSTANCE: this copy's id when a service is scaled out (part of its
                                # transactional id)
    poison_budget: int          # MLBUS_POISON_BUDGET: crashes on one message before it is dead-lettered
    restarts: int               # MLBUS_RESTARTS: set by the keep-alive supervisor for the restarted child

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RuntimeSettings":
        return cls(
            instance=env.get("MLBUS_INSTANCE", "0"),
            poison_budget=positive_int(env, "MLBUS_POISON_BUDGET", 3),
            restarts=int(non_negative(env, "MLBUS_RESTARTS", 0)),
        )


@dataclass(frozen=True)
class AuditSettings:
    """The audit log: how often the auditor signs a tree head, where heads are anchored, and its keys."""

    checkpoint_every: int       # MLBUS_AUDIT_CHECKPOINT_EVERY: audit records between signed tree heads
    head_interval_s: float      # MLBUS_AUDIT_HEAD_INTERVAL_S: and at least this often while records come
    page_records: int           # MLBUS_AUDIT_PAGE_RECORDS: audit records per audit.log message at most
    anchor: str                 # MLBUS_AUDIT_ANCHOR: a directory or fsspec URL outside Kafka for the heads
    key: Path                   # MLBUS_AUDIT_KEY: the auditor's Ed25519 seed (made by `mlbus acl apply`)
    log_id: str                 # MLBUS_AUDIT_LOG_ID: the log's name in its heads (default: the topic's)
    witness_dir: Path           # MLBUS_WITNESS_DIR: the witness's key and state (default var/witness)
    witness_wait_s: float = 30.0    # MLBUS_AUDIT_WITNESS_WAIT_S: how long after a head is signed `audit verify`
                                    # waits for a witness's co-signature of it before calling the log untrusted

    @classmethod
    def from_env(cls, env: Mapping[str, str], var_dir: Path) -> "AuditSettings":
        return cls(
            checkpoint_every=positive_int(env, "MLBUS_AUDIT_CHECKPOINT_EVERY", 1000),
            head_interval_s=non_negative(env, "MLBUS_AUDIT_HEAD_INTERVAL_S", 30.0),
            page_records=positive_int(env, "MLBUS_AUDIT_PAGE_RECORDS", 1000),
            anchor=env.get("MLBUS_AUDIT_ANCHOR") or str(var_dir / "audit-anchor"),
            key=Path(env.get("MLBUS_AUDIT_KEY", var_dir / "keys" / "auditor.ed25519")),
            log_id=env.get("MLBUS_AUDIT_LOG_ID", ""),
            witness_dir=Path(env.get("MLBUS_WITNESS_DIR") or var_dir / "witness"),
            witness_wait_s=non_negative(env, "MLBUS_AUDIT_WITNESS_WAIT_S", 30.0),
        )


@dataclass(frozen=True)
class ServiceSettings:
    """What single services do: the scorer's delivery, the deployer's canary, the console, the notifier's alerts."""

    scorer_delivery: str        # MLBUS_SCORER_DELIVERY: exactly-once | at-least-once
    canary_interval_s: float    # MLBUS_CANARY_INTERVAL_S: seconds per canary step (automatic deployments)
    trainer_min_fit_s: float    # MLBUS_TRAINER_MIN_FIT_S: fault injection, every training lasts this long
    dask_scheduler: str         # MLBUS_DASK_SCHEDULER: a dask.distributed scheduler the trainer runs grids on
    console_port: int           # MLBUS_CONSOLE_PORT: where `mlbus console` and the console service listen
    notifier_config: Path       # MLBUS_NOTIFIER_CONFIG: sinks and routes of alerts (YAML; none: not sent)
    registry_config: str        # MLBUS_REGISTRY_CONFIG: a secured schema registry's access file (scripts/registry's
                                # clients/<user>.properties: url, username, password, CA); MLBUS_REGISTRY_URL wins

    @classmethod
    def from_env(cls, env: Mapping[str, str], var_dir: Path) -> "ServiceSettings":
        return cls(
            scorer_delivery=choice(env, "MLBUS_SCORER_DELIVERY", ("exactly-once", "at-least-once")),
            canary_interval_s=non_negative(env, "MLBUS_CANARY_INTERVAL_S", 60.0),
            trainer_min_fit_s=non_negative(env, "MLBUS_TRAINER_MIN_FIT_S", 0.0),
            dask_scheduler=env.get("MLBUS_DASK_SCHEDULER", "").strip(),
            console_port=positive_int(env, "MLBUS_CONSOLE_PORT", 8080),
            notifier_config=Path(env.get("MLBUS_NOTIFIER_CONFIG", var_dir / "notifier.yaml")),
            registry_config=env.get("MLBUS_REGISTRY_CONFIG", "").strip(),
        )


@dataclass(frozen=True)
class ObservabilitySettings:
    """What a process tells its operators: its logs, and the Prometheus /metrics it serves."""

    log_format: str             # MLBUS_LOG_FORMAT: json, console, or auto (console in a terminal)
    log_level: str              # MLBUS_LOG_LEVEL: the lowest level logged
    metrics_port: int           # MLBUS_METRICS_PORT: this process's Prometheus /metrics port (0: none)
    metrics_base_port: int      # MLBUS_METRICS_BASE_PORT: `mlbus up` gives its i-th service base + i
    metrics_host: str           # MLBUS_METRICS_HOST: the address /metrics listens on (0.0.0.0 in containers)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ObservabilitySettings":
        return cls(
            log_format=env.get("MLBUS_LOG_FORMAT", "auto"),
            log_level=env.get("MLBUS_LOG_LEVEL", "info"),
            metrics_port=int(non_negative(env, "MLBUS_METRICS_PORT", 0)),
            metrics_base_port=positive_int(env, "MLBUS_METRICS_BASE_PORT", 9400),
            metrics_host=env.get("MLBUS_METRICS_HOST", "127.0.0.1"),
        )


@dataclass(frozen=True)
class Settings:
    """Everything a process reads from its environment at start, in sections: `settings.audit.key`."""

    connection: ConnectionSettings
    storage: StorageSettings
    runtime: RuntimeSettings
    audit: AuditSettings
    services: ServiceSettings
    observability: ObservabilitySettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Every section from the environment (os.environ unless given); a value it cannot use is a ConfigError."""
        env = os.environ if environ is None else environ
        storage = StorageSettings.from_env(env)
        return cls(connection=ConnectionSettings.from_env(env, storage.var_dir), storage=storage,
                   runtime=RuntimeSettings.from_env(env), audit=AuditSettings.from_env(env, storage.var_dir),
                   services=ServiceSettings.from_env(env, storage.var_dir),
                   observability=ObservabilitySettings.from_env(env))

    def connecting_as(self, principal: str) -> "Settings":
        """These settings connecting as `principal`, whatever MLBUS_PRINCIPAL says."""
        return replace(self, connection=replace(self.connection, principal=principal))

    def as_person(self, principal: str, kafka: Mapping[str, str]) -> "Settings":
        """These settings connecting as a person (their identity file's credentials), unless MLBUS_PRINCIPAL."""
        connection = replace(self.connection, principal=self.connection.principal or principal,
                             identity_principal=principal, identity_kafka=kafka)
        return replace(self, connection=connection)

    def as_principal(self, default: str) -> "Settings":
        """These settings acting as `default` unless MLBUS_PRINCIPAL names another principal."""
        return self.connecting_as(self.connection.principal or default)

    @property
    def bootstrap(self) -> str:
        """MLBUS_BOOTSTRAP, else the local broker that scripts/kafka started."""
        if self.connection.bootstrap_env:
            return self.connection.bootstrap_env
        bootstrap_file = self.storage.var_dir / "kafka" / "bootstrap"
        if bootstrap_file.exists():
            return bootstrap_file.read_text().strip().removeprefix("bootstrap=")
        raise ConfigError("no Kafka broker: start one with `mlbus up` (or scripts/kafka start), "
                          "or point MLBUS_BOOTSTRAP at an existing cluster")


def kafka_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """MLBUS_KAFKA_SASL_PASSWORD=x → {'sasl.password': Secret('x')}: any librdkafka property by env."""
    overrides: dict[str, str] = {}
    for name, value in env.items():
        if name.startswith(KAFKA_PREFIX):
            prop = name[len(KAFKA_PREFIX):].lower().replace("_", ".")
            overrides[prop] = Secret(value) if any(w in prop for w in SECRET_WORDS) else value
    return overrides


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name} must be a positive whole number, not {text!r}")
    return int(text)


def non_negative(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{name} must be a number of seconds ≥ 0, not {text!r}")
    return value


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, choices[0])
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value
