"""Evolution rule: today's schemas read data written with every committed earlier version of them.

Git is the schema history: each commit that touched schemas/ is a version that may have been written
to a topic. A breaking change (a removed field, a new field without a default) fails here.
"""
import json
import subprocess

import pytest
from fastavro.schema import UnknownType, parse_schema

from services.bus.codec import SchemaCatalogue
from services.bus.settings import PROJECT_ROOT
from tests.support.samples import sample

CURRENT = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout


def committed_versions() -> list[tuple[str, str]]:
    """(commit, schemas/ path) for every committed version of every .avsc file."""
    try:
        paths = git("ls-files", "schemas").split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("not a git checkout: no schema history to check")
    versions = []
    for path in (p for p in paths if p.endswith(".avsc") and "/datasets/" not in p):
        versions += [(commit, path) for commit in git("log", "--format=%H", "--", path).split()]
    return versions


def schemas_at(commit: str) -> dict:
    """Every schema of a commit, parsed with the named types of that same commit."""
    raws = [json.loads(git("show", f"{commit}:{p}")) for p in git("ls-tree", "-r", "--name-only", commit, "schemas")
            .split() if p.endswith(".avsc") and "/datasets/" not in p]
    named: dict = {}
    while raws:
        deferred = []
        for raw in raws:
            try:
                parse_schema(raw, named)
            except UnknownType:
                deferred.append(raw)
        assert len(deferred) < len(raws), f"unresolvable schemas at {commit}"
        raws = deferred
    return named


def test_every_committed_schema_version_is_readable_today():
    versions = committed_versions()
    assert versions, "schemas/ has no committed history"
    for commit, path in versions:
        named = schemas_at(commit)
        raw = json.loads(git("show", f"{commit}:{path}"))
        name = f"{raw['namespace']}.{raw['name']}"
        old = parse_schema(named[name], named, expand=True)
        writer = SchemaCatalogue([old])
        payload = writer.encode(name, sample(old))
        CURRENT.learn(json.dumps(old))
        decoded_name, _ = CURRENT.decode(payload)
        assert decoded_name == name, f"{path} at {commit[:8]}"
