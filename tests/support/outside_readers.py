"""Readers from outside mlbus, as a data platform team would run them against a Confluent-framed topic, all with
security on: a Kafka Connect standalone worker (connect-runtime) with Apicurio Registry's Avro converter writing a
file sink, a Java consumer with Apicurio's Avro serde (tests/support/java/PrintValues.java), each logging in to the
broker with SASL_SSL SCRAM as a principal that may read the topic and to the registry over HTTPS as its read-only
user.

The jars come from Maven Central through compose/connect/pom.xml (`mvn dependency:copy-dependencies` once into
var/connect-libs, cached in ~/.m2), like scripts/kafka's broker jars.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Mapping

from services.bus.settings import PROJECT_ROOT
from tests.support.polling import wait_until
from tests.support.processes import free_port

POM = PROJECT_ROOT / "compose" / "connect" / "pom.xml"
LIBS = PROJECT_ROOT / "var" / "connect-libs"
JAVA_SOURCE = PROJECT_ROOT / "tests" / "support" / "java" / "PrintValues.java"
FETCH_S = 900                     # the first fetch resolves ~100 jars
CCOMPAT, NATIVE_API = "/apis/ccompat/v7", "/apis/registry/v3"


def fetch_jars() -> Path:
    """The readers' jars in var/connect-libs, fetched once per version of the pom."""
    stamp = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    marker = LIBS / f".complete-{stamp}"
    if marker.exists():
        return LIBS
    for tool in ("mvn", "java", "javac", "keytool"):
        assert shutil.which(tool), f"{tool} is needed for the outside readers (apt-get install maven openjdk-17-jdk)"
    shutil.rmtree(LIBS, ignore_errors=True)
    LIBS.mkdir(parents=True)
    # The converter's jar alone (dependency:copy; its descriptor names a parent POM Maven Central does not serve),
    # everything else with its dependencies.
    result = subprocess.run(["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "dependency:copy",
                             f"-DoutputDirectory={LIBS}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=FETCH_S)
    assert result.returncode == 0, f"mvn could not resolve compose/connect/pom.xml:\n{result.stdout[-4000:]}"
    marker.write_text(stamp + "\n")
    return LIBS


@dataclass(frozen=True)
class ReaderAccess:
    """What an outside reader is given: the broker (a person's SCRAM credentials, the broker's CA) and the
    registry (its read-only user, its CA as a Java trust store)."""

    bootstrap: str
    username: str
    password: str
    broker_ca: str
    registry_url: str             # the Confluent-compatible API (https://host:port/apis/ccompat/v7)
    registry_user: str
    registry_password: str
    registry_ca: str
    truststore: str               # PKCS12 holding registry_ca, for the registry clients' JVM (Vert.x uses the JDK's)
    truststore_password: str

    @property
    def native_url(self) -> str:
        """Apicurio's own API, what its serdes 3.x speak."""
        return self.registry_url.removesuffix(CCOMPAT) + NATIVE_API

    def kafka_properties(self, prefix: str = "") -> dict[str, str]:
        jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{self.username}" password="{self.password}";')
        return {f"{prefix}{key}": value for key, value in {
            "bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": jaas, "ssl.truststore.type": "PEM", "ssl.truststore.location": self.broker_ca,
        }.items()}

    def serde_properties(self, prefix: str = "") -> dict[str, str]:
        """Apicurio's serde reading Confluent's framing: a 4-byte id (Default4ByteIdHandler) that is a content id,
        what the registry's Confluent-compatible API hands out; never registering anything."""
        return {f"{prefix}{key}": value for key, value in {
            "apicurio.registry.url": self.native_url,
            "apicurio.registry.auth.username": self.registry_user,
            "apicurio.registry.auth.password": self.registry_password,
            "apicurio.registry.id-handler": "io.apicurio.registry.serde.Default4ByteIdHandler",
            "apicurio.registry.use-id": "contentId",
            "apicurio.registry.auto-register": "false",
        }.items()}

    def jvm_options(self) -> list[str]:
        return [f"-Djavax.net.ssl.trustStore={self.truststore}", "-Djavax.net.ssl.trustStoreType=PKCS12",
                f"-Djavax.net.ssl.trustStorePassword={self.truststore_password}"]


def reader_access(bootstrap: str, kafka: Mapping[str, str], registry_properties: Path, work: Path) -> ReaderAccess:
    """A person's librdkafka credentials (their identity file's `kafka`) and the registry's read-only user
    (scripts/registry's clients/reader.properties), with a trust store made from the registry's CA."""
    registry = dict(line.split("=", 1) for line in registry_properties.read_text().splitlines() if "=" in line)
    truststore, password = work / "registry-ca.p12", secrets.token_urlsafe(12)
    made = subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "registry-ca", "-file", registry["ca"],
                           "-keystore", str(truststore), "-storetype", "PKCS12", "-storepass", password],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr + made.stdout
    return ReaderAccess(bootstrap=bootstrap, username=kafka["sasl.username"], password=kafka["sasl.password"],
                        broker_ca=kafka["ssl.ca.location"], registry_url=registry["url"],
                        registry_user=registry["username"], registry_password=registry["password"],
                        registry_ca=registry["ca"], truststore=str(truststore), truststore_password=password)


def java(libs: Path, *args: str, access: ReaderAccess, classes: Path | None = None) -> list[str]:
    classpath = f"{libs}/*" + (f"{os.pathsep}{classes}" if classes else "")
    return ["java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *access.jvm_options(),
            "-cp", classpath, *args]


def properties_file(path: Path, values: Mapping[str, str]) -> Path:
    """A Java properties file (backslashes escaped), readable by its owner only: it holds passwords."""
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in values.items()))
    return path


@dataclass
class ConnectRun:
    sink: Path                    # what the file sink wrote: one value a line (a Connect Struct's text)
    log: Path
    process: subprocess.Popen
    started: float = field(default_factory=monotonic)

    def lines(self) -> list[str]:
        return self.sink.read_text().splitlines() if self.sink.exists() else []

    def wait_for(self, count: int, deadline_s: float) -> list[str]:
        """The sink's lines once it holds `count` (or the worker ended, or the deadline passed: fewer)."""
        try:
            wait_until(lambda: len(self.lines()) >= count or self.process.poll() is not None, deadline_s,
                       f"{count} values in the file sink", interval=0.5)
        except TimeoutError:
            pass
        return self.lines()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


def start_connect(libs: Path, access: ReaderAccess, topic: str, group: str, work: Path) -> ConnectRun:
    """A Kafka Connect standalone worker: the topic through Apicurio's AvroConverter into a FileStreamSink. The
    worker's REST API listens on 127.0.0.1 only (standalone mode has no way to turn it off)."""
    sink, log = work / "sink.txt", work / "connect.log"
    worker = properties_file(work / "worker.properties", {
        **access.kafka_properties(), **access.kafka_properties("consumer."),
        "key.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
        "value.converter": "io.apicurio.registry.utils.converter.AvroConverter",
        **access.serde_properties("value.converter."),
        "offset.storage.file.filename": str(work / "connect.offsets"),
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://127.0.0.1:{free_port()}",
        "plugin.discovery": "only_scan",
        "connector.client.config.override.policy": "All",
    })
    connector = properties_file(work / "sink.properties", {
        "name": "predictions-to-file", "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1", "topics": topic, "file": str(sink),
        "consumer.override.group.id": group, "consumer.override.auto.offset.reset": "earliest",
    })
    log4j = properties_file(work / "log4j2.properties", {
        "status": "warn", "appender.file.type": "File", "appender.file.name": "file",
        "appender.file.fileName": str(log), "appender.file.layout.type": "PatternLayout",
        "appender.file.layout.pattern": "[%d] %p %m (%c)%n", "rootLogger.level": "INFO",
        "rootLogger.appenderRef.file.ref": "file",
    })
    command = java(libs, f"-Dlog4j2.configurationFile={log4j}", "org.apache.kafka.connect.cli.ConnectStandalone",
                   str(worker), str(connector), access=access)
    process = subprocess.Popen(command, stdout=log.with_suffix(".out").open("w"), stderr=subprocess.STDOUT,
                               cwd=work, start_new_session=True)
    return ConnectRun(sink, log, process)


def compile_reader(libs: Path, work: Path) -> Path:
    classes = work / "classes"
    classes.mkdir(exist_ok=True)
    built = subprocess.run(["javac", "-d", str(classes), "-cp", f"{libs}/*", str(JAVA_SOURCE)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return classes


def start_java_consumer(libs: Path, classes: Path, access: ReaderAccess, topic: str, group: str, count: int,
                        work: Path, deadline_s: int) -> subprocess.Popen:
    """Apicurio's serde in a plain Kafka consumer: the topic's values as lines of JSON on its stdout, until
    `count` were read (exit 0) or the deadline passed (exit 2)."""
    config = properties_file(work / "consumer.properties", {
        **access.kafka_properties(), **access.serde_properties(), "group.id": group})
    return subprocess.Popen(java(libs, "PrintValues", str(config), topic, str(count), str(deadline_s), access=access,
                                 classes=classes), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def struct_fields(line: str, names: tuple[str, ...]) -> dict[str, str]:
    """The named top-level fields of a Connect Struct as the file sink writes it (`Struct{a=1,b=x,...}`, null
    fields left out), each as its text; nested structs, lists and maps are skipped over, not searched."""
    assert line.startswith("Struct{") and line.endswith("}"), f"not a Connect Struct: {line[:200]}"
    parts, depth, begun = [], 0, len("Struct{")
    for at in range(begun, len(line) - 1):
        char = line[at]
        depth += (char in "{[") - (char in "}]")
        if char == "," and depth == 0:
            parts.append(line[begun:at])
            begun = at + 1
    parts.append(line[begun:-1])
    fields = dict(part.split("=", 1) for part in parts if part)
    return {name: fields[name] for name in names if name in fields}


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
