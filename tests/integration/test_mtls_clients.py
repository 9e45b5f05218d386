"""Old clients, said plainly: Debian's kcat (librdkafka 2.0.2) cannot log in with SCRAM to Kafka 4 (librdkafka
before 2.6.1 builds the SCRAM nonce wrongly), so the broker has a second way in — mutual TLS with a certificate
the local CA signed for a principal. On the real secured broker: a person made through the CLI makes their own
key and request, the CA's holder signs it, and kcat reads through that listener with the person's ACLs (a topic
they may read, byte for byte; a private one refused); a certificate of another CA and one naming the super user
are refused."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from services.bus.kafka import base_config
from services.bus.settings import PROJECT_ROOT
from tests.support.people import people_home

KAFKA_SCRIPT = PROJECT_ROOT / "scripts" / "kafka"
READABLE, PRIVATE = "kpis", "business.events"        # topics.yaml: every person reads kpis; business.events is private


def kafka_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(KAFKA_SCRIPT), *args], capture_output=True, text=True, timeout=120)


def kcat(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["kcat", "-F", str(config), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(started: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = started.communicate(timeout=180)
    return subprocess.CompletedProcess(started.args, started.returncode, stdout, stderr)


def consuming(config: Path, topic: str, metadata_s: int = 60) -> subprocess.Popen:
    """kcat reading every message of `topic` from the start to its end, framed as <key length>:<key><value
    length>:<value> (binary-safe: values may hold newlines and NULs); librdkafka's log lines on stderr."""
    return kcat(config, "-C", "-t", topic, "-o", "beginning", "-e", "-m", str(metadata_s), "-f", "%K:%k%S:%s")


def framed(output: bytes) -> dict[bytes, bytes]:
    """kcat's `%K:%k%S:%s` output back into key → value."""
    found, at = {}, 0
    while at < len(output):
        fields = []
        for _ in range(2):
            colon = output.index(b":", at)
            size = int(output[at:colon])
            fields.append(output[colon + 1:colon + 1 + size])
            at = colon + 1 + size
        found[fields[0]] = fields[1]
    return found


def with_certificate(config: Path, certificate: Path, name: str) -> Path:
    text = re.sub(r"(?m)^ssl\.certificate\.location=.*$", f"ssl.certificate.location={certificate}", config.read_text())
    path = config.with_name(name)
    path.write_text(text)
    return path


def librdkafka_version() -> tuple[int, ...]:
    shown = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    return tuple(int(n) for n in re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", shown).groups())


def test_old_kcat_logs_in_with_a_client_certificate_under_the_same_acls(broker, bus, bus_env, cli, tmp_path):
    if not shutil.which("kcat"):
        pytest.fail("Debian's kcat is not installed: scripts/test installs it (apt-get install kcat)")
    state = Path(broker.clients_dir).parent
    if not (state / "bootstrap-mtls").exists():
        pytest.skip(f"the broker was not started by scripts/kafka with its mutual-TLS listener ({state})")

    cli.identity("dana")                                          # a person with a role, through the CLI
    principal = bus.catalogue.namespace + "dana"
    home = people_home(bus_env, "dana") / "tls"                   # dana's machine: her key is made and stays there
    made = kafka_script("client-key", principal, "--out-dir", str(home))
    assert made.returncode == 0, made.stderr
    request = Path(made.stdout.strip().splitlines()[-1])
    signed = kafka_script("client-cert", principal, "--csr", str(request), "--out", str(tmp_path / "dana.crt"),
                          "--dir", str(state))
    assert signed.returncode == 0, signed.stderr
    config = Path(signed.stdout.strip().splitlines()[-1])
    assert "security.protocol=ssl" in config.read_text()
    key = (home / f"{principal}.key").read_bytes()
    assert (home / f"{principal}.key").stat().st_mode & 0o077 == 0
    assert not [p for p in (state / "tls").iterdir() if p.is_file() and key in p.read_bytes()], \
        "the CA holder's directory holds the person's private key"

    sent = {f"k{i}".encode(): bytes([0, 10, 13, 255, i]) + f"value {i}\n".encode() * (i + 1) for i in range(5)}
    producer = Producer(base_config(bus.settings))                # the admin publishes both topics
    for key_bytes, value in sent.items():
        producer.produce(bus.catalogue.physical(READABLE), key=key_bytes, value=value)
    producer.produce(bus.catalogue.physical(PRIVATE), key=b"secret", value=b"not for dana")
    assert producer.flush(60) == 0

    read = finished(consuming(config, bus.catalogue.physical(READABLE)))
    assert read.returncode == 0, read.stderr.decode(errors="replace")
    assert framed(read.stdout) == sent                            # byte for byte

    refused = finished(consuming(config, bus.catalogue.physical(PRIVATE)))
    assert refused.returncode != 0 and b"secret" not in refused.stdout
    assert b"Topic authorization failed" in refused.stderr, refused.stderr      # dana's own ACLs, as over SCRAM

    # A certificate for dana's key signed by another CA: the handshake fails, nothing is read. The super user is
    # never reachable by certificate: client-cert refuses the name, and even a certificate the CA's key signs by
    # hand for CN=admin maps to no principal on the broker.
    for name in ("admin", "a,b", "cn=x", "a/b", "Dana", "x\n"):
        assert kafka_script("client-cert", name, "--csr", str(request), "--out", str(tmp_path / "no.crt"),
                            "--dir", str(state)).returncode != 0, name
    for service in ("auditor", "drift-watcher", "t0123.scorer"):       # a certificate would act as the service
        refused = kafka_script("client-cert", service, "--csr", str(request), "--out", str(tmp_path / "no.crt"),
                               "--dir", str(state))
        assert refused.returncode != 0 and "service's principal" in refused.stderr, refused.stderr
    assert not (tmp_path / "no.crt").exists()
    other = tmp_path / "other-ca"
    other.mkdir()
    for command in (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other / "ca.key"],
                    ["req", "-x509", "-new", "-key", other / "ca.key", "-subj", "/CN=another CA", "-days", "2", "-out",
                     other / "ca.pem"],
                    ["x509", "-req", "-in", request, "-CA", other / "ca.pem", "-CAkey", other / "ca.key",
                     "-CAcreateserial", "-days", "2", "-out", other / "dana.crt"],
                    ["req", "-new", "-key", home / f"{principal}.key", "-subj", "/CN=admin", "-out",
                     tmp_path / "admin.csr"],
                    ["x509", "-req", "-in", tmp_path / "admin.csr", "-CA", state / "tls" / "ca.pem", "-CAkey",
                     state / "tls" / "ca.key", "-days", "1", "-out", tmp_path / "admin.crt"]):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    renamed = kafka_script("client-cert", principal, "--csr", str(tmp_path / "admin.csr"), "--out",
                           str(tmp_path / "no.crt"), "--dir", str(state))     # a request naming someone else
    assert renamed.returncode != 0 and "'CN=admin', not CN=" in renamed.stderr, renamed.stderr
    for service in ("auditor", "drift-watcher", "t0123.scorer"):       # a certificate would act as the service
        refused = kafka_script("client-cert", service, "--csr", str(request), "--out", str(tmp_path / "no.crt"),
                               "--dir", str(state))
        assert refused.returncode != 0 and "service's principal" in refused.stderr, refused.stderr
    assert not (tmp_path / "no.crt").exists()
    foreign = consuming(with_certificate(config, other / "dana.crt", "foreign.properties"),
                        bus.catalogue.physical(READABLE), metadata_s=15)
    as_admin = consuming(with_certificate(config, tmp_path / "admin.crt", "admin.properties"),
                         bus.catalogue.physical(PRIVATE), metadata_s=15)
    foreign, as_admin = finished(foreign), finished(as_admin)
    assert foreign.returncode != 0 and foreign.stdout == b""
    assert b"certificate unknown" in foreign.stderr, foreign.stderr
    assert as_admin.returncode != 0 and b"secret" not in as_admin.stdout
    assert "Failed to map name for 'CN=admin'" in (state / "logs" / "server.log").read_text(errors="replace")


def test_kcat_on_librdkafka_before_2_6_1_cannot_log_in_with_scram(broker):
    """Why the mutual-TLS listener exists: the admin's SCRAM credentials file, which kcat reads with -F, is
    refused to librdkafka < 2.6.1 by Kafka 4's strict nonce check (and accepted from a fixed librdkafka)."""
    if not shutil.which("kcat"):
        pytest.fail("Debian's kcat is not installed: scripts/test installs it (apt-get install kcat)")
    config = Path(broker.clients_dir) / "admin.properties"
    if not config.exists():
        pytest.skip(f"no admin.properties in {broker.clients_dir}")
    listed = finished(kcat(config, "-L", "-m", "15"))
    if librdkafka_version() < (2, 6, 1):
        assert listed.returncode != 0
        assert b"invalid credentials with SASL mechanism SCRAM-SHA-512" in listed.stderr, listed.stderr
    else:
        assert listed.returncode == 0 and b"broker" in listed.stdout, listed.stderr
