"""OpenLineage events checked against the vendored spec (tests/support/openlineage_spec, README there): the run
event against OpenLineage.json's RunEvent, and every facet against the facet schema its _schemaURL names."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SPEC = Path(__file__).parent / "openlineage_spec"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


@cache
def registry() -> Registry:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in sorted(SPEC.glob("*.json"))]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


def validator(url: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": url}, registry=registry(), format_checker=FormatChecker())


def facets(event: dict) -> Iterator[tuple[str, dict]]:
    """(where, facet) for every facet of the event: run, job, and each dataset's facets."""
    yield from ((f"run.{k}", v) for k, v in (event["run"].get("facets") or {}).items())
    yield from ((f"job.{k}", v) for k, v in (event["job"].get("facets") or {}).items())
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for dataset in event.get(side) or []:
            for group in ("facets", extra):
                yield from ((f"{side}.{dataset['name']}.{k}", v) for k, v in (dataset.get(group) or {}).items())


def problems(event: dict) -> list[str]:
    """Every way the event breaks the spec (empty: valid); a facet whose schema is not vendored is one."""
    found = [f"event: {e.message}" for e in validator(RUN_EVENT).iter_errors(event)]
    for where, facet in facets(event):
        url = facet.get("_schemaURL", "")
        if url.split("#")[0] not in registry():
            found.append(f"{where}: schema {url!r} is not vendored")
            continue
        found += [f"{where}: {e.message}" for e in validator(url).iter_errors(facet)]
    return found


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the file transport appended."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
