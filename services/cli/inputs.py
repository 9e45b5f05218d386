"""What people give the CLI: YAML files (model specs, policies)."""
from __future__ import annotations

from pathlib import Path

import yaml

from services.bus.errors import BadInput


def load_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BadInput(f"cannot read {path}: {error}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path} must be a YAML mapping of fields (see scripts/examples/)")
    return raw
