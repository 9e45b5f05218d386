"""The real `mlbus` command for tests, as the broker admin or as one of the people tests act as."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.bus.acl_admin import apply_access
from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.settings import PROJECT_ROOT
from services.bus.topics import TopicAdmin, plan_topics
from services.domain import declare_log_key


def mlbus_cli(env: dict[str, str], *args: str, stdin: str | None = None,
              timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the real `mlbus` command line in a subprocess. Its own `--wait N` decides how long it may take (and
    then says what it waited for): the subprocess's timeout is N + 60 s, else 120 s."""
    if timeout is None:
        waits = [float(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg == "--wait" and args[i + 1].isdigit()]
        timeout = max(waits) + 60 if waits else 120
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


def prepared_bus(env: dict[str, str], principal: str = ADMIN) -> Bus:
    """A Bus (acting as `principal`) whose topics and ACLs all exist in its namespace."""
    bus = Bus.from_env(env, principal=principal)
    admin = TopicAdmin(bus)
    admin.apply(plan_topics(bus.catalogue, admin.existing()))
    apply_access(bus, principals=False)
    declare_log_key(bus)
    return bus


# The people tests act as (mlbus people add NAME --role ROLE), made in a test's namespace on first use.
PEOPLE = {"ana": ["approver"], "bo": ["data-scientist", "operator", "approver"], "carl": ["approver", "data-scientist"],
          "dana": ["data-scientist"], "lead": ["admin"], "etl": ["data-publisher"], "shop": ["data-publisher"],
          "olga": ["operator"], "mallory": ["viewer"], "dora": ["dpo"]}


class Cli:
    """The real `mlbus` command: as the broker admin, or as a person (person="ana": their identity file)."""

    def __init__(self, env: dict[str, str], prepared: bool = False):
        self.env = env
        self._prepared = prepared          # the namespace's topics and ACLs exist already

    def __call__(self, *args: str, person: str | None = None, identity_file: Path | None = None,
                 **kw) -> subprocess.CompletedProcess:
        if person is not None:
            identity_file = self.identity(person)
        env = self.env if identity_file is None else {**self.env, "MLBUS_IDENTITY": str(identity_file)}
        return mlbus_cli(env, *args, **kw)

    def identity(self, name: str) -> Path:
        path = Path(self.env["MLBUS_VAR"]) / "identities" / f"{name}.json"
        if not path.exists():
            if not self._prepared:
                prepared_bus(self.env)
                self._prepared = True
            roles = [arg for role in PEOPLE[name] for arg in ("--role", role)]
            made = mlbus_cli(self.env, "people", "add", name, *roles)
            assert made.returncode == 0, made.stderr
        return path


