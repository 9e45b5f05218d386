"""The shipped Prometheus configuration and alerting rules pass Debian's promtool (no broker needed)."""
import subprocess

from services.bus.settings import PROJECT_ROOT

PROMETHEUS = PROJECT_ROOT / "compose" / "prometheus"


def test_promtool_accepts_the_shipped_rules_and_scrape_config():
    rules = subprocess.run(["promtool", "check", "rules", str(PROMETHEUS / "rules.yml")], capture_output=True,
                           text=True)
    assert rules.returncode == 0 and "SUCCESS: 9 rules found" in rules.stdout, rules.stdout + rules.stderr
    for scrape_config in ("prometheus.yml", "compose.yml"):          # `mlbus up`'s ports, and compose's containers
        config = subprocess.run(["promtool", "check", "config", str(PROMETHEUS / scrape_config)], capture_output=True,
                                text=True)
        assert config.returncode == 0, scrape_config + config.stdout + config.stderr
