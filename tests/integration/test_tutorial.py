"""Docs that run: every shell block of both tutorials, as written, on the real secured broker — the first
(docs/tutorials/first-model.md: a model serving and a prediction explained from audit.log), then the auditor's
(auditors-chair.md: verify, proofs checked offline, a person's data erased) on what the first left. A block after
`% test: repeat until it succeeds, up to N s` is the reader's "repeat until": it is polled with that deadline."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.bus.settings import PROJECT_ROOT
from tests.support.polling import wait_until
from tests.support.processes import free_port

TUTORIAL = PROJECT_ROOT / "docs" / "tutorials" / "first-model.md"
AUDITORS_CHAIR = PROJECT_ROOT / "docs" / "tutorials" / "auditors-chair.md"
BLOCK = re.compile(r"(?:^% test: (?P<directive>[^\n]*)\n)?^```bash\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
REPEAT = re.compile(r"repeat until it succeeds, up to (\d+) s")


def steps(markdown: str) -> list[tuple[str, float | None]]:
    """(shell code, seconds to repeat it for or None) of every bash block, in order."""
    found = []
    for match in BLOCK.finditer(markdown):
        directive = match["directive"] or ""
        repeat = REPEAT.fullmatch(directive.strip())
        assert not directive or repeat, f"unknown tutorial directive: {directive!r}"
        found.append((match["code"], float(repeat[1]) if repeat else None))
    return found


def test_the_tutorial_reads_as_steps():
    """Parsing, without a broker: every block found, the waits marked, and the story's ending present."""
    found = steps(TUTORIAL.read_text())
    code = "\n".join(block for block, _ in found)
    assert len(found) >= 12 and sum(1 for _, repeat in found if repeat) >= 3
    assert "mlbus up" in found[1][0] and "mlbus audit verify" in found[-1][0]     # left running for the next one
    assert "mlbus approve" in code and "mlbus audit explain tutorial-1 --why" in code


def shell(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def run_step(code: str, repeat: float | None, env: dict[str, str], work: Path) -> subprocess.CompletedProcess:
    """Run a block once, or (a reader's "repeat until") poll it until it succeeds or its deadline passes."""
    if repeat is None:
        return shell(code, env, work)
    tries: list[subprocess.CompletedProcess] = []
    try:
        return wait_until(lambda: (tries.append(shell(code, env, work)) or tries[-1].returncode == 0) and tries[-1],
                          timeout=repeat, message=f"the tutorial's step to succeed:\n{code}", interval=1.0)
    except TimeoutError as error:
        raise AssertionError(f"{error}\nits last output:\n{tries[-1].stdout}{tries[-1].stderr}") from None


def test_the_auditors_tutorial_reads_as_steps():
    found = steps(AUDITORS_CHAIR.read_text())
    code = "\n".join(block for block, _ in found)
    assert "mlbus up" in found[0][0] and "mlbus down" in found[-1][0]
    assert "mlbus audit verify" in code and "mlbus audit check-proof" in code and "mlbus audit forget" in code


@pytest.mark.timeout(600)
def test_the_tutorials_run_on_the_real_broker(bus_env, tmp_path):
    work = tmp_path / "repository"         # the reader's checkout: scripts/examples, and files they make
    work.mkdir()
    (work / "scripts").symlink_to(PROJECT_ROOT / "scripts")
    env = {**bus_env, "HOME": str(tmp_path / "home"),      # no identity file of the machine's: the CLI is the admin
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLBUS_CONSOLE_PORT": str(free_port()), "MLBUS_METRICS_BASE_PORT": str(free_port()),
           "MLBUS_LOG_FORMAT": "console"}
    started, transcript = time.monotonic(), []
    try:
        for page in (TUTORIAL, AUDITORS_CHAIR):
            for code, repeat in steps(page.read_text()):
                step_started = time.monotonic()
                result = run_step(code, repeat, env, work)
                transcript.append(f"$ {code}\n{result.stdout}{result.stderr}")
                print(f"{time.monotonic() - step_started:6.1f} s  {code.splitlines()[0][:80]}")
                assert result.returncode == 0, f"{page.name}:\n" + "\n".join(transcript[-3:])
            print(f"{page.name}: {len(transcript)} steps so far, {time.monotonic() - started:.0f} s")
    finally:
        shell("mlbus down", env, work)
    explained = [step for step in transcript if step.startswith("$ mlbus audit explain tutorial-1\n")]
    assert "breast_cancer_lr" in explained[0] and "ana" in explained[0], explained[0]
    [why, *_] = [step for step in transcript if step.startswith("$ mlbus audit explain tutorial-1 --why\n")]
    assert "reproduced from artifact sha256" in why and "not reproduced" not in why, why
