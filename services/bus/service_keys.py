"""Services' own signing keys: a service that makes acts (a training request, ...) signs them, so whoever acts on
them knows which service made them — no field or header a producer writes can say so.

A service makes its key at its first start, in its keys directory (MLBUS_VAR/keys;
mode 0700, the key 0600), with an enrolment request beside it (its public key and a proof of possession: the
same as a person's `mlbus people keygen`). The broker admin declares it on the identities topic under the role
`service` (`mlbus people enrol-services`, which `mlbus up` runs); until then the service waits, saying so.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .context import Bus
from .identity import declare_key, read_enrolment, read_identities
from .projections.identities import SERVICE_ROLE
from .logs import get_logger
from .settings import ConfigError, Settings
from .signing import prove_possession, sign_act

ENROLMENT_SUFFIX = ".enrolment.json"
SIGNING_SERVICES = ("trainer", "drift-watcher")      # the services that make acts (training requests) today


@dataclass(frozen=True)
class ServiceSigner:
    """Signs a service's acts with its own key (wire_form calls it for every record a person or service signs)."""

    name: str
    private_key: bytes

    def __call__(self, record: str, value: dict) -> dict:
        return sign_act(record, value, self.name, self.private_key)


def keys_dir(settings: Settings) -> Path:
    """Where services keep their keys: MLBUS_VAR/keys (in compose, each service's own volume)."""
    return settings.storage.var_dir / "keys"


def own_key(directory: Path, name: str) -> bytes:
    """The service's private key, made (with its enrolment request) if it has none yet."""
    path = directory / f"{name}.key"
    if path.exists():
        return path.read_bytes()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate().private_bytes_raw()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    kid, public, proof = prove_possession(name, private)
    (directory / f"{name}{ENROLMENT_SUFFIX}").write_text(json.dumps(
        {"name": name, "key_id": kid, "public_key": public, "proof": proof}, indent=2) + "\n")
    return private


def enrolled_signer(bus: Bus, name: str, clock: Callable[[], float] = time.monotonic,
                    pause: Callable[[float], None] = time.sleep) -> ServiceSigner:
    """The service's signer once the admin has declared its key (waits, a line every 30 s, until then)."""
    private = own_key(keys_dir(bus.settings), name)
    kid = prove_possession(name, private)[0]
    log = get_logger(component=name)
    started = next_line = clock()
    while not _declared(bus, kid, name):
        if clock() >= next_line:
            log.warning("waiting for the admin to enrol this service's signing key (mlbus people enrol-services)",
                        key_id=kid, waited_s=round(clock() - started))
            next_line = clock() + 30
        pause(1.0)
    return ServiceSigner(name, private)


def _declared(bus: Bus, kid: str, name: str) -> bool:
    key = read_identities(bus).keys.get(kid)
    return key is not None and key.name == name and SERVICE_ROLE in key.roles and key.revoked_at_ms is None


def enrol_services(admin_bus: Bus, directory: Path | None = None) -> list[str]:
    """Declare every service key waiting in the keys directory (as the broker admin): the services' names."""
    directory = directory or keys_dir(admin_bus.settings)
    known = read_identities(admin_bus).keys
    enrolled = []
    for path in sorted(directory.glob(f"*{ENROLMENT_SUFFIX}")) if directory.exists() else []:
        name = path.name.removesuffix(ENROLMENT_SUFFIX)
        request = read_enrolment(path, name)
        if request["key_id"] not in known:
            declare_key(admin_bus, request, admin_bus.catalogue.namespace + name, [SERVICE_ROLE])
            enrolled.append(name)
    return enrolled


def await_enrolments(admin_bus: Bus, names, deadline_s: float = 120.0, directory: Path | None = None,
                     alive: Callable[[], bool] = lambda: True) -> list[str]:
    """Wait until each of these services wrote its enrolment request (at its first start), then declare them all
    (as the broker admin). ConfigError when one has not within the deadline, or `alive` says it stopped."""
    directory = directory or keys_dir(admin_bus.settings)
    deadline = time.monotonic() + deadline_s
    while missing := [n for n in names if not (directory / f"{n}{ENROLMENT_SUFFIX}").exists()]:
        if time.monotonic() > deadline or not alive():
            raise ConfigError(f"{', '.join(missing)} wrote no signing key enrolment in {directory} "
                              f"{'before stopping' if not alive() else f'within {deadline_s:.0f} s'}: see its log")
        time.sleep(0.1)
    return enrol_services(admin_bus, directory)
