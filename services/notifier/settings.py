"""Reading the notifier's YAML (a missing file: no routes, alerts are only recorded)."""
from __future__ import annotations

from pathlib import Path

import yaml

from services.bus.settings import ConfigError

from .decide import Config, NotifierConfigError, parse_config


def load_config(path: Path) -> Config:
    if not path.is_file():
        return Config()
    try:
        config = parse_config(yaml.safe_load(path.read_text()))
    except (NotifierConfigError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    for name, sink in config.sinks.items():
        if sink.get("ca_file") and not Path(sink["ca_file"]).is_file():
            raise ConfigError(f"{path}: sink {name}: ca_file {sink['ca_file']} is not a file")
    return config
