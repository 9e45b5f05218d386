"""The real `mlbus` command for tests, as the broker admin or as one of the people tests act as."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.bus.acl_admin import apply_access
from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.identity import Identity
from services.bus.projections.identities import FOUR_EYES_ROLES
from services.bus.settings import PROJECT_ROOT
from services.bus.signing import endorse
from services.bus.topics import TopicAdmin, plan_topics
from services.adapters import declare_log_key


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


# The people tests act as (keygen, then `mlbus people add NAME --role ROLE`), made in a test's namespace on first use.
PEOPLE = {"ana": ["approver"], "bo": ["data-scientist", "operator", "approver"], "carl": ["approver", "data-scientist"],
          "dana": ["data-scientist"], "lead": ["admin"], "lena": ["admin"], "etl": ["data-publisher"],
          "shop": ["data-publisher"], "olga": ["operator"], "mallory": ["viewer"], "dora": ["dpo"]}
BOOTSTRAP_ADMINS = ("lead", "lena")     # the first two admins; every later approver or admin is endorsed by both


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
        """NAME's identity file on their own machine (a directory beside the admin's MLBUS_VAR), enrolled on
        first use: keygen there, `people add` by the admin, credentials back."""
        path = people_home(self.env, name) / "identity.json"
        if not path.exists():
            if not self._prepared:
                prepared_bus(self.env)
                self._prepared = True
            enrol(lambda *args: mlbus_cli(self.env, *args), name, PEOPLE[name], path, self.endorsers(name))
        return path

    def endorsers(self, name: str, roles=None) -> list[Identity]:
        """Who endorses NAME's grant: the bootstrap admins, for approver or admin roles past the bootstrap."""
        if name in BOOTSTRAP_ADMINS or not set(roles or PEOPLE[name]) & set(FOUR_EYES_ROLES):
            return []
        return [Identity.load(self.identity(admin)) for admin in BOOTSTRAP_ADMINS]


def people_home(env: dict[str, str], name: str) -> Path:
    """Where a test's person keeps their identity file: their machine, apart from the admin's MLBUS_VAR."""
    return Path(env["MLBUS_VAR"]).parent / "people" / name


def enrol(run, name: str, roles, path: Path, endorsers: list[Identity] = ()) -> None:
    """Both sides of enrolment (run: the mlbus CLI as the admin): NAME makes their key at `path`, the admin
    drafts the grant, the endorsers sign it (as `mlbus people endorse` does), the admin enrols the key with these
    roles, NAME takes the credentials, and the admin's copy of them is deleted."""
    made = run("people", "keygen", name, "--out", str(path))
    assert made.returncode == 0, made.stderr
    request = Path(made.stdout.strip())
    roles_args = [arg for role in roles for arg in ("--role", role)]
    endorsed = []
    if endorsers:
        drafted = run("people", "add", name, *roles_args, "--enrolment", str(request))
        assert drafted.returncode != 0 and "endorse" in drafted.stderr, drafted.stderr
        grant = json.loads(request.with_name(f"{name}.grant.json").read_text())
        for admin in endorsers:
            endorsed += ["--endorsement", str(path.with_name(f"{name}.{admin.name}.endorsement.json"))]
            Path(endorsed[-1]).write_text(json.dumps(endorse(grant, admin.name, admin.private_key)))
    added = run("people", "add", name, *roles_args, "--enrolment", str(request), *endorsed)
    assert added.returncode == 0, added.stderr
    credentials = Path(added.stdout.strip())
    taken = run("people", "credentials", str(credentials), "--identity", str(path))
    assert taken.returncode == 0, taken.stderr
    credentials.unlink()
