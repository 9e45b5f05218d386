"""Secrets never on a command line and never readable by other users: the broker's storage is formatted with
the admin's password in a 0600 java argument file (not in argv, which `ps` shows everyone); PostgreSQL's
password file and URL, and a backup (the auditor's key, audit.keys' data keys) are 0600 in 0700 folders;
the database URL (its password) shows as ****** in a repr."""
import importlib.machinery
import importlib.util
import os
import sys

from services.bus.settings import PROJECT_ROOT, Settings
from services.cli.backup_cmd import keep_private, private_folder


def script(name: str):
    """A script of scripts/ (no .py suffix) as a module."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))          # their own `from ports import …`
    loader = importlib.machinery.SourceFileLoader(f"mlbus_script_{name}", str(PROJECT_ROOT / "scripts" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_the_admin_password_goes_to_the_storage_tool_in_a_file_never_in_argv(tmp_path):
    kafka = script("kafka")
    command, arguments = kafka.format_command(tmp_path, tmp_path / "server.properties", "cluster1", "s3cr3t-Pa55")
    assert not [a for a in command if "s3cr3t" in a]
    assert command[-1] == f"@{tmp_path / 'format.args'}"
    assert '"SCRAM-SHA-512=[name=admin,password=s3cr3t-Pa55]"' in arguments.splitlines()
    assert arguments.splitlines()[:2] == ['"kafka.tools.StorageTool"', '"format"']
    assert kafka.java_argfile(['a"b\\c']) == '"a\\"b\\\\c"\n'               # java's @file quoting


def test_postgres_secrets_are_owner_only_from_their_first_byte(tmp_path):
    postgres = script("postgres")                   # its password file and URL, written as scripts/private.py does
    state = tmp_path / "pg"
    postgres.private_dir(state)
    postgres.private_file(state / "url", "postgresql://mlbus:pw@127.0.0.1/mlbus\n")
    assert (state.stat().st_mode & 0o777, (state / "url").stat().st_mode & 0o777) == (0o700, 0o600)


def test_a_backup_folder_is_the_owners_alone(tmp_path):
    old = os.umask(0o022)
    try:
        dest = tmp_path / "backup"
        private_folder(dest)
        (dest / "topics" / "audit.keys").mkdir(parents=True)
        (dest / "topics" / "audit.keys" / "0.avro").write_bytes(b"data keys")
        keep_private(dest)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in dest.rglob("*")} == {0o700, 0o600}
    assert (dest / "topics" / "audit.keys" / "0.avro").stat().st_mode & 0o777 == 0o600


def test_the_database_url_is_a_secret_in_reprs():
    settings = Settings.from_env({"MLBUS_DATABASE_URL": "postgresql+psycopg://mlbus:hunter2@db/mlbus"})
    assert "hunter2" not in repr(settings) and str(settings.storage.database_url).endswith("@db/mlbus")
