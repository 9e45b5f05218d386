"""Email over STARTTLS verifies the SMTP server (a local aiosmtpd with a self-signed certificate; no broker):
with the system's trust store the notifier refuses the server and sends nothing — no login, no alert —
and with the sink's `ca_file` naming that certificate it delivers."""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.bus.settings import ConfigError
from services.notifier.settings import load_config
from services.notifier.sinks import send
from tests.support.processes import free_port

ALERT = {"alert_id": "a1", "kind": "drift", "severity": "critical", "model": "m", "version": 1, "message": "drift",
         "evidence_json": "{}", "cause_id": "c1", "raised_at": dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)}


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key (no CA anyone trusts): (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlbus test smtp")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class Inbox:
    def __init__(self):
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):    # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    yield inbox, port, cert_file
    controller.stop()


def test_starttls_refuses_a_server_the_trust_store_does_not_vouch_for(smtp_server):
    inbox, port, _ = smtp_server
    sink = {"type": "email", "host": "127.0.0.1", "port": port, "starttls": True, "from": "mlbus@test",
            "to": ["oncall@test"]}
    refused = send(sink, [ALERT])
    assert refused is not None and "CERTIFICATE_VERIFY_FAILED" in refused, refused
    assert inbox.messages == []


def test_starttls_with_the_sinks_ca_file_delivers(smtp_server):
    inbox, port, cert_file = smtp_server
    sink = {"type": "email", "host": "127.0.0.1", "port": port, "starttls": True, "ca_file": cert_file,
            "from": "mlbus@test", "to": ["oncall@test"]}
    assert send(sink, [ALERT]) is None
    assert len(inbox.messages) == 1 and b"drift" in inbox.messages[0]


def test_a_login_without_starttls_or_a_missing_ca_file_is_a_config_error(tmp_path):
    config = tmp_path / "notifier.yaml"
    config.write_text("sinks:\n  mail: {type: email, host: h, from: f, to: t, username: u, password: p}\n")
    with pytest.raises(ConfigError, match="starttls"):
        load_config(config)
    config.write_text("sinks:\n  mail: {type: email, host: h, from: f, to: t, starttls: true, ca_file: /nope.pem}\n")
    with pytest.raises(ConfigError, match="ca_file"):
        load_config(config)
