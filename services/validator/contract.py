"""A dataset's contract: an Avro record schema in schemas/datasets/ whose fields carry constraints.

    {"type": "record", "name": "breast_cancer", "namespace": "mlbus.datasets",
     "mlbus.contract": {"version": 1, "target": "diagnosis", "keys": ["id"], "min_rows": 10,
                        "max_rows": 1000000, "duplicate_rows": "warn", "outliers": {"method": "robust_z",
                        "threshold": 6.0}},
     "fields": [{"name": "id", "type": "long"},
                {"name": "mean_radius", "type": ["null", "double"], "mlbus.max_missing": 0.05,
                 "mlbus.min": 0, "mlbus.max": 100},
                {"name": "diagnosis", "type": "string", "mlbus.allowed": ["benign", "malignant"]}]}

A nullable field (a union with null) may miss up to mlbus.max_missing of its values (default: any);
a non-nullable field may miss none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = {"long": "integer", "int": "integer", "double": "numeric", "float": "numeric", "string": "string",
         "boolean": "boolean"}


class ContractError(ValueError):
    """The contract file itself is wrong."""


@dataclass(frozen=True)
class FieldRule:
    name: str
    kind: str                    # integer | numeric | string | boolean
    nullable: bool
    max_missing: float
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple | None = None


@dataclass(frozen=True)
class Contract:
    dataset: str
    version: int
    fields: tuple[FieldRule, ...]
    target: str | None
    keys: tuple[str, ...]
    min_rows: int
    max_rows: int | None
    duplicate_rows: str          # fail | warn
    outlier_method: str          # robust_z | iqr | none
    outlier_threshold: float

    @property
    def label(self) -> str:
        return f"{self.dataset}@v{self.version}"

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]


def parse_contract(schema: dict[str, Any]) -> Contract:
    options = schema.get("mlbus.contract", {})
    fields = tuple(_field_rule(f) for f in schema.get("fields", []))
    if not fields:
        raise ContractError(f"contract {schema.get('name')} has no fields")
    names = {f.name for f in fields}
    keys = tuple(options.get("keys", []))
    target = options.get("target")
    unknown = (set(keys) | ({target} if target else set())) - names
    if unknown:
        raise ContractError(f"contract {schema['name']} names columns it does not define: {sorted(unknown)}")
    outliers = options.get("outliers", {})
    if outliers.get("method", "robust_z") not in ("robust_z", "iqr", "none"):
        raise ContractError(f"contract {schema['name']}: outliers.method must be robust_z, iqr or none")
    return Contract(dataset=schema["name"], version=int(options.get("version", 1)), fields=fields, target=target,
                    keys=keys, min_rows=int(options.get("min_rows", 1)), max_rows=options.get("max_rows"),
                    duplicate_rows=options.get("duplicate_rows", "warn"),
                    outlier_method=outliers.get("method", "robust_z"),
                    outlier_threshold=float(outliers.get("threshold", 3.5)))


def _field_rule(field: dict[str, Any]) -> FieldRule:
    avro_type = field["type"]
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    nullable = "null" in branches
    concrete = [b for b in branches if b != "null"]
    if len(concrete) != 1 or concrete[0] not in KINDS:
        raise ContractError(f"field {field['name']}: type {avro_type!r} is not a supported column type")
    allowed = field.get("mlbus.allowed")
    return FieldRule(name=field["name"], kind=KINDS[concrete[0]], nullable=nullable,
                     max_missing=float(field.get("mlbus.max_missing", 1.0 if nullable else 0.0)),
                     minimum=field.get("mlbus.min"), maximum=field.get("mlbus.max"),
                     allowed=tuple(allowed) if allowed is not None else None)
