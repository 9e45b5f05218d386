"""The lineage service's settings, read once from the environment at start (frozen; the API key never logged)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from services.bus.settings import ConfigError, positive_int


@dataclass(frozen=True)
class LineageSettings:
    file: Path | None                  # MLBUS_LINEAGE_FILE: OpenLineage events appended as JSON lines
    url: str | None                    # MLBUS_LINEAGE_URL: an OpenLineage HTTP endpoint (Marquez: http://host:5000)
    endpoint: str                      # MLBUS_LINEAGE_ENDPOINT: the path under the URL (api/v1/lineage)
    api_key: str | None = field(repr=False)     # MLBUS_LINEAGE_API_KEY: sent as a Bearer token
    namespace: str = "mlbus"           # MLBUS_LINEAGE_NAMESPACE: the namespace of mlbus's jobs and model versions
    period_s: int = 3600               # MLBUS_LINEAGE_PERIOD_S: one scoring run per model version and period
    grace_s: float = 60.0              # MLBUS_LINEAGE_GRACE_S: a period is closed this long after its end

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "LineageSettings":
        env = os.environ if env is None else env
        file, url = env.get("MLBUS_LINEAGE_FILE", "").strip(), env.get("MLBUS_LINEAGE_URL", "").strip()
        if not file and not url:
            raise ConfigError("set MLBUS_LINEAGE_FILE (a JSON-lines file) or MLBUS_LINEAGE_URL (an "
                              "OpenLineage endpoint such as Marquez's http://localhost:5000), or both")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"MLBUS_LINEAGE_URL must be an http:// or https:// URL, not {url[:80]!r}")
        try:
            grace_s = float(env.get("MLBUS_LINEAGE_GRACE_S", "60"))
        except ValueError:
            raise ConfigError("MLBUS_LINEAGE_GRACE_S must be a number of seconds") from None
        if grace_s < 0:
            raise ConfigError("MLBUS_LINEAGE_GRACE_S must not be negative")
        return cls(file=Path(file) if file else None, url=url or None,
                   endpoint=env.get("MLBUS_LINEAGE_ENDPOINT", "api/v1/lineage"),
                   api_key=env.get("MLBUS_LINEAGE_API_KEY") or None,
                   namespace=env.get("MLBUS_LINEAGE_NAMESPACE", "mlbus").strip() or "mlbus",
                   period_s=positive_int(env, "MLBUS_LINEAGE_PERIOD_S", 3600), grace_s=grace_s)
