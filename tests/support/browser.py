"""Headless Chromium from Debian's package, driven by Playwright (which never downloads a browser here), and
the console as a real process."""
from __future__ import annotations

import shutil
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from services.bus.settings import PROJECT_ROOT
from tests.support.polling import wait_until
from tests.support.processes import free_port, running

SHOTS = PROJECT_ROOT / "var" / "console-screenshots"      # every screenshot the browser tests take

# As the machine's notes say: without the background-networking flags Chromium keeps calling out to a
# network that is closed here; --no-sandbox because the suite may run as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is not installed: scripts/test installs it (apt-get install chromium)")
    return found


@contextmanager
def console_running(env: dict, log: Path) -> Iterator[str]:
    """The console service (python -m services.console) on a free port; yields its base URL once it
    has read the topics to their end and answers."""
    port = free_port()
    with running("services.console", env, log, MLBUS_CONSOLE_PORT=str(port)) as process:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert process.poll() is None, f"the console exited:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(answers, timeout=90, message="the console to answer")
        yield base


@contextmanager
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Visitor:
    """One person's browser context: every console message and page error is kept (a test asserts none), and
    every request body the browser sends (a test asserts none holds the private key)."""

    def __init__(self, launched, base: str, shots: Path):
        self.context = launched.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.base, self.shots = base, shots
        self.errors: list[str] = []
        self.sent: list[bytes] = []
        self.context.on("request", lambda r: self.sent.append(r.post_data_buffer or b""))
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def login(self, identity_file: Path) -> "Visitor":
        """Log in as the login page lets a person: the file is chosen, read and used in the page, never sent."""
        self.page.goto(self.base + "/")
        self.page.set_input_files("#identity-file", str(identity_file))
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/")
        return self

    def leaked(self, identity_file: Path) -> list[bytes]:
        """The request bodies this browser sent that hold the identity file's private key (any encoding)."""
        import base64
        import json
        from urllib.parse import quote_plus
        private = json.loads(identity_file.read_text())["private_key"]
        forms = {private.encode(), quote_plus(private).encode(), base64.b64decode(private),
                 base64.b64decode(private).hex().encode()}
        return [body for body in self.sent if any(form in body for form in forms)]

    def open(self, path: str, shot: str | None = None):
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        self.page.wait_for_function("() => [...document.querySelectorAll('[data-chart]')]"
                                    ".every(el => el.dataset.drawn === 'yes' || el.textContent.length > 0)")
        if shot:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        return self.page


def screens_as(env: dict, identity_file: Path, log: Path, screens: dict[str, str]) -> dict[str, str]:
    """Start the console, log in as the person, open each screen (name → path) once every chart is drawn,
    save a screenshot under var/console-screenshots/ and return each screen's text; fails on any console
    error."""
    with console_running(env, log) as base, browser() as chromium:
        visitor = Visitor(chromium, base, SHOTS).login(identity_file)
        texts = {name: visitor.open(path, shot=name).inner_text("main") for name, path in screens.items()}
        assert visitor.errors == [], visitor.errors
        return texts
