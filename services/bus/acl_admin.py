"""The broker side of access control: SCRAM principals with their credentials files, and ACLs (adapter).
Runs with the admin's credentials; `mlbus acl apply` and `mlbus up` call it."""
from __future__ import annotations

import secrets
import time
from typing import Any, Iterable, cast

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from .access import Grant, in_scope, plan_acls, service_principals
from .context import Bus
from .credentials import ADMIN, credentials_file, read_properties, write_properties
from .kafka import admin_config
from .settings import ConfigError

RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.BROKER,
             "transactional_id": ResourceType.TRANSACTIONAL_ID}
PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
SCRAM_ITERATIONS = 4096


class AclAdmin:
    def __init__(self, bus: Bus):
        self.settings = bus.settings.connecting_as(ADMIN)
        if not credentials_file(self.settings, ADMIN).exists():
            raise ConfigError(f"managing principals and ACLs needs the broker admin's credentials "
                              f"({credentials_file(self.settings, ADMIN)}); "
                              f"this broker is not secured by scripts/kafka")
        self.admin = AdminClient(admin_config(self.settings))

    def existing(self) -> set[Grant]:
        anything: Any = None    # a filter's None matches any name, principal or host (its stubs say str)
        everything = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
                                      AclOperation.ANY, AclPermissionType.ANY)
        bindings = self.admin.describe_acls(everything, request_timeout=30).result()
        return {_grant(b) for b in bindings if b.permission_type == AclPermissionType.ALLOW}

    def create(self, grants: Iterable[Grant], deadline_s: float = 30.0) -> None:
        """Create the ACLs and wait until the broker's authorizer reports them: the controller commits them
        first and the broker applies them a moment later, and a service started in between is refused."""
        wanted = set(grants)
        bindings = [_binding(g) for g in sorted(wanted)]
        for future in self.admin.create_acls(bindings, request_timeout=60).values() if bindings else []:
            future.result()
        give_up = time.monotonic() + deadline_s
        while wanted - self.existing():
            if time.monotonic() > give_up:
                raise TimeoutError(f"the broker does not report {len(wanted - self.existing())} new ACLs after "
                                   f"{deadline_s:.0f}s")
            time.sleep(0.1)

    def delete(self, grants: Iterable[Grant]) -> None:
        filters = [cast(AclBindingFilter, _binding(g, as_filter=True)) for g in sorted(grants)]
        for future in self.admin.delete_acls(filters, request_timeout=60).values() if filters else []:
            future.result()

    def ensure_principal(self, name: str) -> bool:
        """SCRAM credentials for `name` on the broker and in `<clients>/<name>.properties` (0600); True if made.
        A principal whose file exists keeps its password (set again: the broker may be new)."""
        path = credentials_file(self.settings, name)
        made = not path.exists()
        password = secrets.token_urlsafe(24) if made else str(read_properties(path)["sasl.password"])
        upsert = UserScramCredentialUpsertion(name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                                              password.encode())
        for future in self.admin.alter_user_scram_credentials([upsert], request_timeout=30).values():
            future.result()
        admin = read_properties(credentials_file(self.settings, ADMIN))
        write_properties(path, {"bootstrap.servers": self.settings.bootstrap,
                                "security.protocol": admin["security.protocol"],
                                "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": name, "sasl.password": password,
                                "ssl.ca.location": admin["ssl.ca.location"]})
        return made

    def forget_principal(self, name: str) -> None:
        """Delete the principal's SCRAM credentials on the broker and its credentials file."""
        deletion = UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)
        for future in self.admin.alter_user_scram_credentials([deletion], request_timeout=30).values():
            future.result()
        credentials_file(self.settings, name).unlink(missing_ok=True)


def _binding(grant: Grant, as_filter: bool = False) -> AclBinding:
    kind = AclBindingFilter if as_filter else AclBinding
    return kind(RESOURCES[grant.resource], grant.name, PATTERNS[grant.pattern], f"User:{grant.principal}", "*",
                AclOperation[grant.operation.upper()], AclPermissionType.ALLOW)


def _grant(binding: AclBinding) -> Grant:
    # AclBinding turns its str or int arguments into the enums; the stubs keep the union it accepts.
    restype = cast(ResourceType, binding.restype)
    pattern_type = cast(ResourcePatternType, binding.resource_pattern_type)
    operation = cast(AclOperation, binding.operation)
    resource = {v: k for k, v in RESOURCES.items()}.get(restype, restype.name.lower())
    pattern = {v: k for k, v in PATTERNS.items()}.get(pattern_type, "other")
    return Grant(binding.principal.removeprefix("User:"), resource, binding.name, pattern, operation.name.lower())


def apply_access(bus: Bus, people: dict[str, list[str]] | None = None,
                 principals: bool = True) -> tuple[list[str], set[Grant], set[Grant]]:
    """Make the catalogue's principals (unless principals=False) and create its missing ACLs; returns the
    principals made, the ACLs created and the ACLs in this namespace that the catalogue does not imply."""
    acl_admin = AclAdmin(bus)
    made = [name for name in service_principals(bus.catalogue) if principals and acl_admin.ensure_principal(name)]
    wanted = plan_acls(bus.catalogue, people)
    existing = acl_admin.existing()
    missing = wanted - existing
    acl_admin.create(missing)
    extra = {g for g in existing - wanted if in_scope(g, bus.catalogue.namespace)}
    return made, missing, extra
