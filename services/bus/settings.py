"""Settings read once from the environment into a frozen object; secrets never print."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
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


@dataclass(frozen=True)
class Settings:
    home: Path
    var_dir: Path
    bootstrap_env: str | None
    namespace: str
    instance: str
    replication: int | None
    kafka_overrides: Mapping[str, str] = field(default_factory=dict)
    database_url: str = ""
    data_store: str = ""                # MLBUS_DATA: data snapshots, a folder or an fsspec URL (s3://bucket/data)
    artifacts_store: str = ""           # MLBUS_ARTIFACTS: model artifacts, likewise
    contracts_dir: Path = Path()
    log_format: str = "auto"
    log_level: str = "info"
    principal: str = ""                 # MLBUS_PRINCIPAL: whose broker credentials this process uses
    kafka_clients_dir: Path = Path()    # <principal>.properties files (scripts/kafka, mlbus acl apply)
    identity_principal: str = ""        # the person the CLI acts as (identity file), and their broker credentials
    identity_kafka: Mapping[str, str] | None = None
    poison_budget: int = 3              # MLBUS_POISON_BUDGET: crashes on one message before it is dead-lettered
    max_snapshot_bytes: int = 1 << 30   # MLBUS_MAX_SNAPSHOT_BYTES: a data file (and its decompressed columns)
    max_artifact_bytes: int = 1 << 29   # MLBUS_MAX_ARTIFACT_BYTES: a model file
    canary_interval_s: float = 60.0     # MLBUS_CANARY_INTERVAL_S: seconds per canary step (automatic deployments)
    audit_checkpoint_every: int = 1000  # MLBUS_AUDIT_CHECKPOINT_EVERY: audit records between signed tree heads
    audit_head_interval_s: float = 30.0  # MLBUS_AUDIT_HEAD_INTERVAL_S: and at least this often while records come
    audit_page_records: int = 1000      # MLBUS_AUDIT_PAGE_RECORDS: audit records per audit.log message at most
    audit_anchor: str = ""              # MLBUS_AUDIT_ANCHOR: a directory or fsspec URL outside Kafka for the heads
    audit_key: Path = Path()            # MLBUS_AUDIT_KEY: the auditor's Ed25519 seed (made by `mlbus acl apply`)
    audit_log_id: str = ""              # MLBUS_AUDIT_LOG_ID: the log's name in its heads (default: the topic's)
    witness_dir: Path = Path()          # MLBUS_WITNESS_DIR: the witness's key and state (default var/witness)
    scorer_delivery: str = "exactly-once"   # MLBUS_SCORER_DELIVERY: exactly-once | at-least-once
    trainer_min_fit_s: float = 0.0      # MLBUS_TRAINER_MIN_FIT_S: fault injection, every training lasts this long
    console_port: int = 8080            # MLBUS_CONSOLE_PORT: where `mlbus console` and the console service listen
    notifier_config: Path = Path()      # MLBUS_NOTIFIER_CONFIG: sinks and routes of alerts (YAML; none: not sent)
    metrics_port: int = 0               # MLBUS_METRICS_PORT: this process's Prometheus /metrics port (0: none)
    metrics_base_port: int = 9400       # MLBUS_METRICS_BASE_PORT: `mlbus up` gives its i-th service base + i
    metrics_host: str = "127.0.0.1"     # MLBUS_METRICS_HOST: the address /metrics listens on (0.0.0.0 in containers)
    restarts: int = 0                   # MLBUS_RESTARTS: set by the keep-alive supervisor for the restarted child

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("MLBUS_HOME", PROJECT_ROOT))
        var_dir = Path(env.get("MLBUS_VAR", home / "var"))
        replication = env.get("MLBUS_REPLICATION")
        return cls(
            home=home,
            var_dir=var_dir,
            bootstrap_env=env.get("MLBUS_BOOTSTRAP") or None,
            namespace=env.get("MLBUS_NAMESPACE", ""),
            instance=env.get("MLBUS_INSTANCE", "0"),
            replication=int(replication) if replication else None,
            kafka_overrides=kafka_overrides(env),
            database_url=Secret(env.get("MLBUS_DATABASE_URL", f"sqlite:///{var_dir / 'mlbus.db'}")),   # a password
            data_store=env.get("MLBUS_DATA") or str(var_dir / "data"),
            artifacts_store=env.get("MLBUS_ARTIFACTS") or str(var_dir / "artifacts"),
            contracts_dir=Path(env.get("MLBUS_CONTRACTS", home / "schemas" / "datasets")),
            log_format=env.get("MLBUS_LOG_FORMAT", "auto"),
            log_level=env.get("MLBUS_LOG_LEVEL", "info"),
            principal=env.get("MLBUS_PRINCIPAL", ""),
            kafka_clients_dir=Path(env.get("MLBUS_CREDENTIALS_DIR", var_dir / "kafka" / "clients")),
            poison_budget=positive_int(env, "MLBUS_POISON_BUDGET", 3),
            max_snapshot_bytes=positive_int(env, "MLBUS_MAX_SNAPSHOT_BYTES", 1 << 30),
            max_artifact_bytes=positive_int(env, "MLBUS_MAX_ARTIFACT_BYTES", 1 << 29),
            canary_interval_s=non_negative(env, "MLBUS_CANARY_INTERVAL_S", 60.0),
            audit_checkpoint_every=positive_int(env, "MLBUS_AUDIT_CHECKPOINT_EVERY", 1000),
            audit_head_interval_s=non_negative(env, "MLBUS_AUDIT_HEAD_INTERVAL_S", 30.0),
            audit_page_records=positive_int(env, "MLBUS_AUDIT_PAGE_RECORDS", 1000),
            audit_anchor=env.get("MLBUS_AUDIT_ANCHOR") or str(var_dir / "audit-anchor"),
            audit_key=Path(env.get("MLBUS_AUDIT_KEY", var_dir / "keys" / "auditor.ed25519")),
            audit_log_id=env.get("MLBUS_AUDIT_LOG_ID", ""),
            witness_dir=Path(env.get("MLBUS_WITNESS_DIR") or var_dir / "witness"),
            scorer_delivery=choice(env, "MLBUS_SCORER_DELIVERY", ("exactly-once", "at-least-once")),
            trainer_min_fit_s=non_negative(env, "MLBUS_TRAINER_MIN_FIT_S", 0.0),
            console_port=positive_int(env, "MLBUS_CONSOLE_PORT", 8080),
            notifier_config=Path(env.get("MLBUS_NOTIFIER_CONFIG", var_dir / "notifier.yaml")),
            metrics_port=int(non_negative(env, "MLBUS_METRICS_PORT", 0)),
            metrics_base_port=positive_int(env, "MLBUS_METRICS_BASE_PORT", 9400),
            metrics_host=env.get("MLBUS_METRICS_HOST", "127.0.0.1"),
            restarts=int(non_negative(env, "MLBUS_RESTARTS", 0)),
        )

    def as_person(self, principal: str, kafka: Mapping[str, str]) -> "Settings":
        """These settings connecting as a person (their identity file's credentials), unless MLBUS_PRINCIPAL."""
        return replace(self, principal=self.principal or principal, identity_principal=principal, identity_kafka=kafka)

    def as_principal(self, default: str) -> "Settings":
        """These settings acting as `default` unless MLBUS_PRINCIPAL names another principal."""
        return replace(self, principal=self.principal or default)

    @property
    def client_principal(self) -> str:
        """The principal this process connects as: a service's own name, `admin` for the CLI, else `app`."""
        return self.principal or "app"

    @property
    def bootstrap(self) -> str:
        """MLBUS_BOOTSTRAP, else the local broker that scripts/kafka started."""
        if self.bootstrap_env:
            return self.bootstrap_env
        bootstrap_file = self.var_dir / "kafka" / "bootstrap"
        if bootstrap_file.exists():
            return bootstrap_file.read_text().strip().removeprefix("bootstrap=")
        raise ConfigError("no Kafka broker: start one with `mlbus up` (or scripts/kafka start), "
                          "or point MLBUS_BOOTSTRAP at an existing cluster")

    @property
    def schemas_dir(self) -> Path:
        return self.home / "schemas"

    @property
    def topics_file(self) -> Path:
        return self.home / "topics.yaml"

    def secret_values(self) -> list[str]:
        return [str(v) for v in self.kafka_overrides.values() if isinstance(v, Secret)]


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
