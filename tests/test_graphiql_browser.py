"""GraphiQL in a real browser (Debian's chromium, driven by Playwright) against a real server
process, with every other host blocked: the page renders from this server's files alone, an
operation typed into the editor runs, and the answer shows in the result pane.

The screenshot goes to $ARTIFACTS_DIR (default ./artifacts) for CI to keep;
docs/images/graphiql.png is one of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from tests.helpers import require_tool
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SECRET = "a-browser-test-secret-of-32-bytes-or-more"
# Generous: a loaded 2-core machine can take long to start chromium and parse 3.5 MB of JS.
PAGE_SECONDS = 60
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

REMEMBER = (
    "mutation Remember {\n"
    '  remember(memories: [{text: "Grace keeps a moth in her logbook"}]) { ids }\n'
    "}\n"
)
RECALL = 'query Recall {\n  recall(text: "moth logbook", limit: 3) { text }\n}\n'


def artifacts() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = require_tool("chromium")  # CI=true: a missing one fails instead of skipping
    launched = playwright.chromium.launch(
        executable_path=chromium, args=LAUNCH_ARGS, headless=True, timeout=PAGE_SECONDS * 1000
    )
    yield launched
    launched.close()


def start(tmp_path: Path, **env: str) -> ServerProcess:
    return ServerProcess(tmp_path / "data", tmp_path / "server.log", **env).start()


class Visit:
    """One page, every request to a host but 127.0.0.1 aborted and recorded."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 720})
        self.context.set_default_timeout(PAGE_SECONDS * 1000)
        self.elsewhere: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._only_this_server)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.goto(f"{url}/graphql", wait_until="load")
        # GraphiQL has rendered its editors (until then the page says "Loading...").
        self.page.locator(".graphiql-query-editor .CodeMirror").wait_for(state="visible")

    def _only_this_server(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def type_into(self, editor: str, text: str) -> None:
        """Replace an editor's text, entered through the keyboard's input path (insert_text:
        CodeMirror would close brackets after key presses, but not after input)."""
        self.page.locator(f"{editor} .CodeMirror").first.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.insert_text(text)
        typed = self.page.evaluate(
            "selector => document.querySelector(selector).CodeMirror.getValue()",
            f"{editor} .CodeMirror",
        )
        assert typed == text

    def run(self, query: str, expect: str) -> str:
        self.type_into(".graphiql-query-editor", query)
        # GraphiQL takes the operation's name from the editor a moment after the edit (and a
        # click before then sends the previous name); its saved tab state shows when it has.
        name = query.split("{", 1)[0].split()[-1]
        self.page.wait_for_function(
            """([query, name]) => {
                const state = JSON.parse(localStorage.getItem("graphiql:tabState") || "null");
                const tab = state && state.tabs[state.activeTabIndex];
                return tab && tab.query === query && tab.operationName === name;
            }""",
            arg=[query, name],
        )
        self.page.locator(".graphiql-execute-button").click()
        result = self.page.locator(".graphiql-response")
        deadline = time.monotonic() + PAGE_SECONDS
        while expect not in (text := result.inner_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert expect in text, text
        return text

    def close(self) -> None:
        self.context.close()


def test_graphiql_runs_an_operation_offline(browser: Browser, tmp_path: Path) -> None:
    server = start(tmp_path)
    visit = None
    try:
        visit = Visit(browser, server.url)
        remembered = visit.run(REMEMBER, '"ids"')
        assert '"errors"' not in remembered, remembered
        recalled = visit.run(RECALL, "Grace keeps a moth in her logbook")
        assert '"errors"' not in recalled, recalled
        # The docs pane is built from the schema the page introspected.
        visit.page.get_by_role("button", name="Show Documentation Explorer").click()
        visit.page.locator(".graphiql-doc-explorer").get_by_text("Mutation").first.wait_for()
        visit.page.screenshot(path=str(artifacts() / "graphiql.png"))
        assert visit.elsewhere == []
        assert visit.errors == []
    finally:
        if visit is not None:
            visit.close()
        server.stop()


def test_with_credentials_the_page_asks_for_the_header_and_runs_with_it(
    browser: Browser, tmp_path: Path
) -> None:
    server = start(tmp_path, AUTH_JWT_SECRET=SECRET)
    visit = None
    try:
        visit = Visit(browser, server.url)
        note = visit.page.locator("#auth-note")
        assert note.is_visible()
        assert '{"Authorization": "Bearer <token>"}' in note.inner_text()
        # The headers editor is open on the header to fill in; left as it is, nothing runs.
        visit.run(RECALL, "UNAUTHENTICATED")
        credential = jwt.encode(
            {"tenant": "acme", "scope": "read write", "exp": int(time.time()) + 3600},
            SECRET,
            algorithm="HS256",
        )
        visit.type_into(
            ".graphiql-editor-tool .graphiql-editor:not(.hidden)",
            json.dumps({"Authorization": f"Bearer {credential}"}),
        )
        visit.run(REMEMBER, '"ids"')
        visit.run(RECALL, "Grace keeps a moth in her logbook")
        visit.page.screenshot(path=str(artifacts() / "graphiql-credentials.png"))
        assert visit.elsewhere == []
    finally:
        if visit is not None:
            visit.close()
        server.stop()
