"""The console over HTTPS when it listens beyond this machine: a certificate from the local CA that secures the
broker (scripts/kafka makes it: `tls/` beside the credentials directory, ca.pem and ca.key), made with openssl
once and kept there. On 127.0.0.1 or localhost the console speaks plain HTTP, nothing else does."""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

from services.bus.settings import ConfigError, Settings

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Does binding `host` keep the console on this machine? (0.0.0.0 and :: listen everywhere.)"""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ca_dir(settings: Settings) -> Path:
    return settings.connection.kafka_clients_dir.parent / "tls"


def subject_names(host: str, hostname: str) -> list[str]:
    """The names the console's certificate is valid for: this machine's, localhost, and the bound address."""
    names = ["IP:127.0.0.1", "DNS:localhost", f"DNS:{hostname}"]
    try:
        if not ipaddress.ip_address(host.strip("[]")).is_unspecified:
            names.append(f"IP:{host.strip('[]')}")
    except ValueError:
        names.append(f"DNS:{host}")
    return list(dict.fromkeys(names))


def console_certificate(settings: Settings, host: str) -> tuple[Path, Path]:
    """(certificate, key) for the console, signed by the local CA; made once, kept in the CA's directory."""
    tls = ca_dir(settings)
    cert, key = tls / "console.crt", tls / "console.key"
    if cert.exists() and key.exists():
        return cert, key
    if not (tls / "ca.key").exists():
        raise ConfigError(f"the console listens on {host}, beyond this machine, so it serves HTTPS with a "
                          f"certificate from the local CA — but {tls / 'ca.key'} is missing (scripts/kafka start "
                          f"makes it); or listen on 127.0.0.1")
    if not shutil.which("openssl"):
        raise ConfigError("the openssl command is needed to make the console's TLS certificate")
    names = ",".join(subject_names(host, socket.gethostname()))
    (tls / "console.ext").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    for args in (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "console.key"],
                 ["req", "-new", "-key", "console.key", "-subj", "/CN=mlbus console", "-out", "console.csr"],
                 ["x509", "-req", "-in", "console.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                  "-days", "825", "-sha256", "-extfile", "console.ext", "-out", "console.crt"]):
        made = subprocess.run(["openssl", *args], cwd=tls, capture_output=True, text=True)
        if made.returncode != 0:
            raise ConfigError(f"openssl {args[0]} failed for the console's certificate: {made.stderr[-500:]}")
    os.chmod(key, 0o600)
    return cert, key
