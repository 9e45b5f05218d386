"""Metrics in tests: a process's /metrics page read, and Debian's real Prometheus server scraping targets every
second, queried by its HTTP API."""
from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .processes import free_port


@contextmanager
def prometheus_scraping(targets: list[str], workdir: Path) -> Iterator[str]:
    """A Prometheus server scraping `targets` (host:port) every second; yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                  "scrape_configs": [{"job_name": "mlbus",
                                                      "static_configs": [{"targets": targets}]}]}))
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log:
        server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def query(base: str, promql: str) -> float | None:
    """The value of an instant PromQL query with one result, or None (no result yet, or the server not up)."""
    try:
        with urllib.request.urlopen(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as page:
            found = json.loads(page.read())["data"]["result"]
    except OSError:
        return None
    return float(found[0]["value"][1]) if len(found) == 1 else None


def query_error(base: str, promql: str) -> str | None:
    """Why the server refuses a PromQL expression (a parse or type error), or None when it evaluates it."""
    try:
        with urllib.request.urlopen(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as page:
            return None if json.loads(page.read())["status"] == "success" else "failed"
    except urllib.error.HTTPError as error:
        return json.loads(error.read()).get("error", str(error))


def scrape(port: int) -> dict[str, float]:
    """A process's /metrics page as {series with its labels sorted: value} (empty while nothing listens)."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    except OSError:
        return {}
    return {sample.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}": sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
