"""Browser harness: Debian's Chromium driven by Playwright against a live ``suanli up --demo``.

Chromium comes from the distribution (``make browser`` installs it; Playwright's own download
does not work here). Without it the browser tests skip with a loud reason, except in CI
(``CI=true``), where they fail: CI must run them. Screenshots of every page land in
``test-output/screenshots/`` for a reviewer to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import REPO, Network, free_port

CHROMIUM = Path(os.environ.get("SUANLI_CHROMIUM", "/usr/bin/chromium"))
SHOTS = REPO / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM}: run 'make browser' (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests must run in CI, but {missing}")
        print(f"\n*** SKIPPING BROWSER TESTS: {missing} ***")
        pytest.skip(f"BROWSER TESTS NOT RUN: {missing}")
    return CHROMIUM


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Network]:
    """One ``suanli up --demo`` for the browser tests; stopped with Ctrl-C at the end."""
    del chromium_path  # ordering: skip before starting a network we would not use
    net = Network(tmp_path_factory.mktemp("suanli-web"), free_port())
    try:
        net.start()
        yield net
        status = net.stop()
        assert status == 0, f"suanli up exited with {status}:\n{net.log()}"
    finally:
        net.close()


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)  # files are overwritten by name, never wiped (runs may overlap)
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Session:
    """One browser context (its own cookies) signed in to the demo network."""

    def __init__(self, browser: Any, net: Network, locale: str) -> None:
        self.net = net
        self.context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        #: Console errors a test expects (e.g. the 422 of a refused spec), by substring.
        self.expected_errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.net.url + path)

    @property
    def admin_token(self) -> str:
        return (self.net.home / "demo" / "admin.token").read_text().strip()

    def sign_in(self, token: str | None = None) -> None:
        token = token or self.admin_token
        self.goto("/")
        assert "/login" in self.page.url
        self.page.get_by_test_id("token").fill(token)
        self.page.get_by_test_id("sign-in").click()
        self.page.wait_for_url(self.net.url + "/")

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0, f"empty screenshot {path}"
        return path

    def close(self) -> None:
        self.context.close()
        unexpected = [e for e in self.errors if not any(x in e for x in self.expected_errors)]
        assert not unexpected, f"the page logged errors: {unexpected}"


@pytest.fixture
def session(browser: Any, demo: Network) -> Iterator[Session]:
    s = Session(browser, demo, "en-US")
    yield s
    s.close()


@pytest.fixture
def zh_session(browser: Any, demo: Network) -> Iterator[Session]:
    s = Session(browser, demo, "zh-CN")
    yield s
    s.close()
