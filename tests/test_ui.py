"""The web UI at /ui and the offline API docs, driven in Debian's chromium through Playwright.

Playwright's own browser download cannot work here: the tests point it at `chromium` from Debian
(scripts/setup.sh --tests installs it), headless, with a new empty profile per browser. Every
request a page makes is recorded, and the tests fail on one that leaves 127.0.0.1 or on a
JavaScript error. Batches run on the fake spark-submit; the pages read the same registry and
views whatever the driver is (test_spark.py runs real Spark through the same API).

UPDATE_SCREENSHOTS=1 also writes the README's screenshot, docs/ui-overview.png.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LivyServer
from tests.test_security import PASSWORDS, as_user, users_file  # noqa: F401 - users_file is a fixture

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh --tests)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
README_SCREENSHOT = REPO / "docs" / "ui-overview.png"
TIMEOUT_MS = 20_000


@dataclass
class Browser:
    """A chromium with its own empty profile; records every request and every JavaScript error."""

    context: playwright_api.BrowserContext
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def page(self) -> playwright_api.Page:
        page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda err: self.errors.append(f"{page.url}: {err}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: console: {msg.text}"))
        return page

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but 127.0.0.1 (data: URLs never leave the page; blob: ones name their origin)."""
        return [
            url
            for url in self.requests
            if not url.startswith("data:") and urlsplit(url.removeprefix("blob:")).hostname != "127.0.0.1"
        ]


@pytest.fixture(scope="module")
def playwright() -> Iterator[playwright_api.Playwright]:
    with playwright_api.sync_playwright() as driver:
        yield driver


@pytest.fixture
def open_browser(playwright: playwright_api.Playwright) -> Iterator[Callable[..., Browser]]:
    opened: list[tuple[playwright_api.BrowserContext, str]] = []

    def open_one(credentials: tuple[str, str] | None = None, javascript: bool = True) -> Browser:
        profile = tempfile.mkdtemp(prefix="ui-test-chromium-")
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 640},
            http_credentials=None if credentials is None else {"username": credentials[0], "password": credentials[1]},
            java_script_enabled=javascript,
        )
        opened.append((context, profile))
        browser = Browser(context)
        context.on("request", lambda request: browser.requests.append(request.url))
        return browser

    yield open_one
    for context, profile in opened:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


def save(page: playwright_api.Page, directory: Path, name: str, full_page: bool = True) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def row(page: playwright_api.Page, batch_id: int) -> playwright_api.Locator:
    return page.locator(f'table.sessions tr[data-id="{batch_id}"][data-kind="batch"]')


def test_overview_detail_log_delete_and_docs(
    make_server: Callable[..., LivyServer], job_file: str, open_browser: Callable[..., Browser], tmp_path: Path
) -> None:
    server = make_server({"livy.server.session.state-retain.sec": "2d", "livy.server.csrf-protection.enabled": "true"})
    ui_line = "SparkUI: Bound SparkUI to 127.0.0.1, and started at http://127.0.0.1:4041"
    finished = server.submit(file=job_file, name="nightly-etl", args=["lines=40", "app=app-20261130120000-0001", ui_line])
    failed = server.submit(file=job_file, name="broken-report", args=["exit=3", "lines=2"])
    server.wait_for(finished["id"])
    server.wait_for(failed["id"])
    running = server.submit(file=job_file, name="long-aggregation", args=["sleep=60", "app=app-20261130120000-0002"])
    server.wait_for(running["id"], {"running"})
    session = server.post("/sessions", json={"kind": "pyspark", "name": "analyst-notebook"})
    assert session.status_code == 201, session.text
    server.wait_for(session.json()["id"], {"idle"}, path="/sessions", timeout=60)

    browser = open_browser()
    page = browser.page()
    response = page.goto(server.url + "/")
    assert response is not None and response.ok
    assert urlsplit(page.url).path == "/ui", "/ redirects to the UI"
    assert "success" in row(page, finished["id"]).inner_text()
    assert "running" in row(page, running["id"]).inner_text()
    assert "dead" in row(page, failed["id"]).inner_text()
    link = row(page, finished["id"]).get_by_role("link", name="app-20261130120000-0001")
    assert link.get_attribute("href") == "http://127.0.0.1:4041", "the app id links to the Spark UI"
    banner = page.locator("#retention")
    assert "state-retain" in banner.inner_text() and "2d" in banner.inner_text()
    assert "more than a day" in banner.locator(".warning").inner_text(), "a retention over a day is warned about"
    assert page.locator("ul.counts").inner_text().count("running") == 1
    save(page, tmp_path, "ui-overview")
    if os.environ.get("UPDATE_SCREENSHOTS"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        save(page, README_SCREENSHOT.parent, README_SCREENSHOT.stem)

    # state filter and paging, without JavaScript's help: plain links (a click starts the navigation; the
    # count waits for the new page, as a plain count() could read the old one or one still being parsed)
    page.get_by_role("link", name=re.compile(r"^dead \d")).click()
    playwright_api.expect(page.locator("table.sessions tbody tr")).to_have_count(1)
    page.goto(server.url + "/ui?size=2")
    playwright_api.expect(page.locator("table.sessions tbody tr")).to_have_count(2)
    page.get_by_role("link", name="older").click()
    playwright_api.expect(page.locator(".pager")).to_contain_text("3-4 of 4")  # the older page, not the one before
    playwright_api.expect(page.locator("table.sessions tbody tr")).to_have_count(2)

    # the finished batch: fields and its driver log
    page.goto(server.url + "/ui")
    page.get_by_role("link", name="nightly-etl").click()
    assert urlsplit(page.url).path == f"/ui/batches/{finished['id']}"
    assert page.locator("#fields").get_by_text("app-20261130120000-0001").count() >= 1
    page.locator("#log").get_by_text("driver line 37").wait_for()
    save(page, tmp_path, "ui-batch-finished")

    # a running batch's page follows new log lines and its state, through the JSON API
    ending = server.submit(file=job_file, name="ends-soon", args=["sleep=4", "lines=3"])
    server.wait_for(ending["id"], {"running"})
    follow = browser.page()
    follow.goto(f"{server.url}/ui/batches/{ending['id']}")
    assert follow.locator("#state").inner_text() == "running"
    assert "Successfully stopped" not in follow.locator("#log").inner_text()
    follow.locator("#log").get_by_text("Successfully stopped SparkContext").wait_for()
    follow.wait_for_function("document.getElementById('state').textContent === 'success'")
    follow.close()

    # Delete goes through DELETE /batches/{id} with the CSRF header (the server demands it here)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete").click()
    page.wait_for_url(re.compile(r"/ui$"))
    assert row(page, finished["id"]).count() == 0
    assert server.get(f"/batches/{finished['id']}").status_code == 404

    # API docs from local assets
    page.goto(server.url + "/docs")
    page.locator(".opblock-summary-path", has_text="/batches/{key}/log").wait_for()
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/batches", "/batches/{key}", "/batches/{key}/state", "/batches/{key}/log"} <= {p.strip() for p in paths}
    save(page, tmp_path, "docs", full_page=False)
    page.goto(server.url + "/redoc")
    page.get_by_text("/batches/{key}/log").first.wait_for()
    save(page, tmp_path, "redoc", full_page=False)

    assert browser.foreign_requests() == [], browser.requests
    assert browser.errors == []
    assert any(url.endswith("/ui/static/ui.js") for url in browser.requests)


def test_names_and_log_lines_stay_text(fake_server: LivyServer, job_file: str, open_browser: Callable[..., Browser]) -> None:
    """A name or a log line full of markup is shown as text: nothing runs, nothing is fetched."""
    names = ["<script>alert(1)", "<img src=x onerror=alert(2)>"]
    batches = [fake_server.submit(file=job_file, name=name, args=["<script>alert(3)</script>", "lines=1"]) for name in names]
    for batch in batches:
        fake_server.wait_for(batch["id"])
    answer = fake_server.get("/ui")
    assert answer.headers["content-security-policy"].startswith("default-src 'self';"), "no inline script would run"
    html = answer.text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)" in html

    browser = open_browser()
    page = browser.page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(fake_server.url + "/ui")
    shown = page.locator("table.sessions tbody td:nth-child(2)").all_inner_texts()
    assert sorted(shown) == sorted(names)
    page.get_by_role("link", name=names[0]).click()
    assert page.locator("h1 .name").inner_text() == names[0]
    assert "arg[0]=<script>alert(3)</script>" in page.locator("#log").inner_text()
    assert dialogs == []
    assert browser.errors == []
    assert browser.foreign_requests() == []
    assert not [url for url in browser.requests if urlsplit(url).path.endswith("/x")], "the <img> was never parsed"


def test_pages_work_without_javascript(fake_server: LivyServer, job_file: str, open_browser: Callable[..., Browser]) -> None:
    """Everything but the live updates and Delete: filters, paging, a batch's page and its log pages."""
    first = fake_server.submit(file=job_file, name="first", args=["lines=250"])
    second = fake_server.submit(file=job_file, name="second", args=["exit=1"])
    for batch in (first, second):
        fake_server.wait_for(batch["id"])
    page = open_browser(javascript=False).page()
    page.goto(fake_server.url + "/ui?size=1")
    assert page.locator("table.sessions tbody td:nth-child(2)").all_inner_texts() == ["second"]
    page.get_by_role("link", name="older").click()
    assert page.locator("table.sessions tbody td:nth-child(2)").all_inner_texts() == ["first"]
    page.get_by_role("link", name=re.compile(r"^success \d")).click()
    assert page.locator("table.sessions tbody td:nth-child(2)").all_inner_texts() == ["first"]
    page.get_by_role("link", name="first").click()
    log = page.locator("#log")
    assert "driver line 249" in log.inner_text() and "driver line 100" not in log.inner_text(), "the last 100 lines first"
    page.get_by_role("link", name="first", exact=True).click()
    assert log.inner_text().startswith("INFO SparkContext: Running Spark")
    page.get_by_role("link", name="later").click()
    assert "driver line 100" in log.inner_text()
    assert "Deleting needs JavaScript" in page.locator(".actions").inner_text()


def test_basic_auth_asks_and_users_see_their_own(
    make_server: Callable[..., LivyServer],
    users_file: Path,  # noqa: F811 - the fixture imported above
    job_file: str,
    open_browser: Callable[..., Browser],
) -> None:
    server = make_server(
        {
            "livy.server.auth.type": "basic",
            "livy.server.auth.basic.users-file": str(users_file),
            "livy.server.access-control.enabled": "true",
            "livy.server.access-control.view-users": "victor",
            "livy.server.csrf-protection.enabled": "true",
            "livy.server.session.max-sessions": "2",
        }
    )
    own: dict[str, int] = {}
    for user in ("alice", "bob"):
        created = as_user(user).post(server.url + "/batches", json={"file": job_file, "name": f"{user}-job"}, timeout=30)
        assert created.status_code == 201, created.text
        own[user] = created.json()["id"]

    stranger = open_browser().page()
    answers: list[playwright_api.Response] = []
    stranger.on("response", lambda response: answers.append(response))
    # Headless chromium has no password dialog: it gives up on the challenge after seeing it.
    with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        stranger.goto(server.url + "/ui")
    assert [(a.url, a.status) for a in answers] == [(server.url + "/ui", 401)]
    assert answers[0].headers["www-authenticate"].lower().startswith("basic")
    assert "alice-job" not in answers[0].text()

    alice = open_browser(("alice", PASSWORDS["alice"]))
    page = alice.page()
    response = page.goto(server.url + "/ui")
    assert response is not None and response.ok
    assert "alice" in page.locator("header .user").inner_text()
    assert page.locator("table.sessions tbody td:nth-child(2)").all_inner_texts() == ["alice-job"]
    assert "(yours only)" in page.locator("h1").inner_text()
    assert "over 80% of livy.server.session.max-sessions" in page.locator("#retention .warning").inner_text()
    response = page.goto(f"{server.url}/ui/batches/{own['bob']}")
    assert response is not None and response.status == 403
    assert "bob-job" not in page.content()
    assert [error for error in alice.errors if "status of 403" not in error] == []
    alice.errors.clear()
    page.goto(f"{server.url}/ui/batches/{own['alice']}")
    assert page.locator("#delete").count() == 1
    page.goto(server.url + "/docs")
    page.locator(".opblock-summary-path", has_text="/batches").first.wait_for()
    assert alice.errors == []
    assert alice.foreign_requests() == []

    victor = open_browser(("victor", PASSWORDS["victor"])).page()
    victor.goto(server.url + "/ui")
    assert sorted(victor.locator("table.sessions tbody td:nth-child(2)").all_inner_texts()) == ["alice-job", "bob-job"]
    victor.goto(f"{server.url}/ui/batches/{own['bob']}")
    assert victor.locator("#delete").count() == 0, "a view user may look but not delete"
    assert requests.get(server.url + "/ui/static/ui.js", timeout=10).status_code == 401


def test_interactive_session_page_statements_and_delete(
    fake_server: LivyServer, job_file: str, open_browser: Callable[..., Browser], tmp_path: Path
) -> None:
    """Sessions and batches in one overview; a session's page shows its statements' outputs (text,
    table, error) as text, picks up new ones while it is up, and deletes through DELETE /sessions/{id}.
    The REPL is the real driver as plain Python (the fake spark-submit runs it without Spark)."""
    batch = fake_server.submit(file=job_file, name="a-batch", args=["lines=1"])
    created = fake_server.post("/sessions", json={"kind": "pyspark", "name": "notebook"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    fake_server.wait_for(sid, {"idle"}, path="/sessions", timeout=60)
    fake_server.wait_for(batch["id"])
    fake_server.run(sid, "x = 41\nprint('<b>hello</b>')\nx + 1")
    fake_server.run(sid, "rows = [{'a': 1, 'b': '<i>x</i>'}]\n%table rows")
    fake_server.run(sid, "1 / 0")

    browser = open_browser()
    page = browser.page()
    page.goto(fake_server.url + "/ui")
    session_row = page.locator(f'table.sessions tr[data-id="{sid}"][data-kind="session"]')
    assert "session (pyspark)" in session_row.inner_text() and "idle" in session_row.inner_text()
    assert session_row.locator("td").nth(8).inner_text(), "an idle session's 'expires in' (its idle timeout)"
    assert row(page, batch["id"]).count() == 1, "batches and sessions in one list"
    session_row.get_by_role("link", name="notebook").click()
    assert urlsplit(page.url).path == f"/ui/sessions/{sid}"
    statements = page.locator("#statements")
    assert statements.locator("article.statement").count() == 3
    assert "<b>hello</b>\n42" in statements.locator('article[data-statement="0"] pre.output').inner_text()
    assert statements.locator('article[data-statement="1"] table.result td').all_inner_texts() == ["1", "<i>x</i>"]
    assert "ZeroDivisionError" in statements.locator('article[data-statement="2"] pre.error').inner_text()
    save(page, tmp_path, "ui-session")

    fake_server.run(sid, "x * 2")  # arrives while the page is open: the statements section refreshes
    statements.locator('article[data-statement="3"]').get_by_text("82").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete").click()
    page.wait_for_url(re.compile(r"/ui$"))
    assert fake_server.get(f"/sessions/{sid}").status_code == 404
    assert browser.errors == []
    assert browser.foreign_requests() == []
