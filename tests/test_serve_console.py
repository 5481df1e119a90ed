"""The web console of `flux serve` in a real headless Chromium (Debian's `chromium`, driven by
Playwright), against a real server whose executions were made by real runs.

Every test also checks that no request left 127.0.0.1 and that the page logged no error.
`FLUX_SCREENSHOTS=docs` keeps screenshots of the three pages in that folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from flux.domain.schedule import cron, interval
from flux.errors import ScheduleNotFoundError
from flux.schedules import create_schedule, get_schedule
from tests.conftest import ROOT, flux_cmd, flux_popen
from tests.serve_helpers import WORKFLOWS, Server, start, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server on a file store holding an execution of every status, made by real runs."""
    tmp = tmp_path_factory.mktemp("console")
    server = Server(str(tmp / "store"), tmp)
    ids: dict[str, str] = {}
    try:
        with server.client() as api:
            ids["completed"] = start(api, "counter", {"n": 5}, wait=10)["execution_id"]
            ids["failed"] = start(api, "explode", "the card was declined", wait=10)["execution_id"]
            ids["paused"] = start(api, "approval", None, wait=10)["execution_id"]
            ids["sleeping"] = start(api, "sleeper", 3600, wait=1)["execution_id"]
            ids["running"] = start(api, "slow", 3600)["execution_id"]
            cancelled = start(api, "slow", 3600)["execution_id"]
            wait_for(
                lambda: api.get(f"/api/v1/executions/{cancelled}").json()["pending"]["running"], what="a body to cancel"
            )
            assert (
                api.post(f"/api/v1/executions/{cancelled}/cancel", params={"wait": 20}).json()["status"] == "cancelled"
            )
            ids["cancelled"] = cancelled
            ids["created"] = api.post(
                f"/api/v1/executions/{ids['completed']}/fork", json={"at": 1, "run": False}
            ).json()["execution_id"]
            ids["retried"] = start(api, "retrying", {"key": "console", "failures": 2}, wait=20)["execution_id"]
            ids["wide"] = start(api, "wide", {"n": 10_000, "fail_every": 1000}, wait=120)["execution_id"]
            ids["showcase"] = start(api, "showcase", None, wait=20)["execution_id"]
            killed = flux_popen(
                "exec",
                str(WORKFLOWS),
                "slow",
                "--input",
                "3600",
                "--id",
                "killed-run",
                "--store",
                server.store,
                "--durability",
                "os",
                cwd=tmp,
            )
            wait_for(
                lambda: (
                    api.get("/api/v1/executions/killed-run").status_code == 200
                    and api.get("/api/v1/executions/killed-run").json()["pending"]["running"]
                ),
                what="the other process's body",
            )
            killed.send_signal(signal.SIGKILL)
            killed.communicate()
            ids["interrupted"] = "killed-run"
            old = tmp / "approval_v1.py"
            old.write_text(
                textwrap.dedent("""
                from flux import task, workflow
                from flux.tasks import pause

                @task
                async def audit(n: int) -> int:
                    return n

                @workflow
                async def approval(ctx):
                    await audit(7)
                    return await pause("approve")
            """)
            )
            assert (
                "paused"
                in flux_cmd("exec", str(old), "approval", "--id", "old-code", "--store", server.store, cwd=tmp).stdout
            )
            assert api.post("/api/v1/executions/old-code/replay").json()["status"] == "diverged"
            ids["diverged"] = "old-code"
        yield server, ids
    finally:
        server.stop()


class Browser:
    """One Chromium for the module; each test gets a fresh page. Requests to any host but
    127.0.0.1 are aborted and recorded; console errors and page errors are recorded."""

    def __init__(self, playwright: Any, **options: Any) -> None:
        self._profile = tempfile.mkdtemp(prefix="flux-chromium-")
        self.context = playwright.chromium.launch_persistent_context(
            self._profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
            **options,
        )
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def page(self) -> Any:
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        return page

    def close(self) -> None:
        self.context.close()
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Browser]:
    running = Browser(playwright)
    yield running
    running.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    page = browser.page()
    yield page
    page.close()
    assert browser.outside == [], f"requests left 127.0.0.1: {browser.outside}"
    assert browser.errors == [], f"the page logged errors: {browser.errors}"


def _journal(server: Server, execution_id: str) -> bytes:
    return (Path(server.store) / "executions" / f"{execution_id}.jsonl").read_bytes()


def _line(locator: Any) -> str:
    """The journal line a `.ln` element shows (after its seq)."""
    return str(locator.evaluate("node => node.lastChild.textContent"))


def _screenshot(page: Any, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("FLUX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=full_page)


def test_the_list_shows_executions_of_every_status(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, ids = made
    page.goto(server.url + "/")
    for status, execution_id in ids.items():
        if status in ("retried", "wide", "showcase"):
            continue
        row = page.locator(f'tr[data-id="{execution_id}"]')
        row.wait_for()
        assert row.get_attribute("data-status") == status, (status, execution_id)
        assert row.locator(".chip").inner_text() == status
    assert page.locator(f'tr[data-id="{ids["sleeping"]}"] .countdown').inner_text().startswith("in ")
    assert page.locator(f'tr[data-id="{ids["wide"]}"] td').nth(5).inner_text() == "10000"
    _screenshot(page, "console-executions.png")
    page.locator('.statuses input[value="failed"]').check()
    wait_for(lambda: page.locator("#executions tbody tr").count() == 1, what="only the failed execution")
    assert page.locator("#executions tbody tr").get_attribute("data-id") == ids["failed"]


def test_the_waterfall_has_one_bar_per_call_and_retries_as_segments(
    made: tuple[Server, dict[str, str]], page: Any
) -> None:
    server, ids = made
    for key in ("completed", "retried"):
        calls = httpx.get(f"{server.url}/api/v1/executions/{ids[key]}/calls").json()["calls"]
        page.goto(f"{server.url}/#/executions/{ids[key]}")
        page.locator(f'#waterfall[data-rows="{len(calls)}"]').wait_for()
        rows = page.locator("#waterfall .wf-row")
        assert rows.count() == len(calls) and page.locator("#waterfall .wf-row .bar").count() == len(calls)
        assert [rows.nth(i).get_attribute("data-call") for i in range(rows.count())] == [c["call_id"] for c in calls]
    retry_bar = page.locator('#waterfall .wf-row[data-call="1"] .seg')
    assert retry_bar.count() == 5  # three attempts and the two waits between them
    assert [retry_bar.nth(i).get_attribute("class") for i in range(5)] == [
        "seg k-attempt o-failed",
        "seg k-wait o-",
        "seg k-attempt o-failed",
        "seg k-wait o-",
        "seg k-attempt o-completed",
    ]


def test_a_paused_run_is_resumed_from_its_form_and_the_page_updates_without_reload(
    made: tuple[Server, dict[str, str]], page: Any
) -> None:
    server, _ = made
    with server.client() as api:
        execution_id = start(api, "approval", None, wait=10)["execution_id"]
    page.goto(f"{server.url}/#/executions/{execution_id}")
    page.locator('#head .chip[data-status="paused"]').wait_for()
    page.evaluate("window.__same_page = 'yes'")
    form = page.locator('li.pause[data-call="2"]')
    form.locator("textarea").fill('{"approved": true, "by": "grace"}')
    form.locator("button.resume").click()
    page.locator('#head .chip[data-status="completed"]').wait_for(timeout=15_000)
    assert page.evaluate("window.__same_page") == "yes", "the page was not reloaded"
    assert '"by": "grace"' in page.locator("#output").inner_text()
    page.locator('#journal .ln[data-seq="6"]').wait_for()  # the new records came through the stream
    assert json.loads(_line(page.locator('#journal .ln[data-seq="6"]')))["kind"] == "workflow_completed"


def test_an_execution_page_shows_its_calls_pending_pause_and_journal(
    made: tuple[Server, dict[str, str]], page: Any
) -> None:
    server, ids = made
    page.goto(f"{server.url}/#/executions/{ids['showcase']}")
    page.locator('#head .chip[data-status="paused"]').wait_for()
    page.locator("#journal .ln").first.wait_for()
    rows = page.locator("#waterfall .wf-row")
    outcomes = {
        rows.nth(i).get_attribute("data-call"): rows.nth(i).get_attribute("data-outcome") for i in range(rows.count())
    }
    assert outcomes == {
        "1": "completed",
        "2.1": "completed",
        "3.1": "completed",
        "4.1": "completed",
        "5": "failed",
        "6": "fired",
        "7": "open",
    }
    assert page.locator('#waterfall .wf-row[data-call="1"] .seg').count() == 3  # attempt, wait, attempt
    assert page.locator('#waterfall .wf-row[data-call="6"] .seg.k-timer').count() == 1
    assert page.locator('#waterfall .wf-row[data-call="7"] .seg.k-pause').count() == 1
    assert page.locator('li.pause[data-call="7"] textarea').count() == 1
    assert "gift wrap is out of stock" in page.locator("#calls").inner_text()
    _screenshot(page, "console-execution.png", full_page=True)


def test_cancel_works(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, _ = made
    with server.client() as api:
        execution_id = start(api, "slow", 3600)["execution_id"]
        wait_for(lambda: api.get(f"/api/v1/executions/{execution_id}").json()["pending"]["running"], what="the body")
    page.goto(f"{server.url}/#/executions/{execution_id}")
    page.locator('#head .chip[data-status="running"]').wait_for()
    assert "running" in page.locator("#pending").inner_text()
    page.locator("#cancel").click()
    assert page.locator("#cancel").inner_text() == "Confirm cancel"
    page.locator("#cancel").click()
    page.locator('#head .chip[data-status="cancelled"]').wait_for(timeout=20_000)
    assert httpx.get(f"{server.url}/api/v1/executions/{execution_id}").json()["status"] == "cancelled"


def test_the_downloaded_journal_equals_the_stored_bytes(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, ids = made
    page.goto(f"{server.url}/#/executions/{ids['completed']}")
    page.locator("#journal .ln").first.wait_for()
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename == f"{ids['completed']}.jsonl"
    assert Path(download.value.path()).read_bytes() == _journal(server, ids["completed"])
    shown = page.locator("#journal .ln")
    stored = _journal(server, ids["completed"]).decode().splitlines()
    assert [_line(shown.nth(i)) for i in range(shown.count())] == stored


def test_a_10000_call_execution_renders_only_the_rows_in_sight(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, ids = made
    page.goto(f"{server.url}/#/executions/{ids['wide']}")
    page.locator('#waterfall[data-rows="10000"]').wait_for(timeout=30_000)
    page.locator("#calls tbody tr").nth(199).wait_for()
    # Only the rows in sight are drawn; scrolling to the end draws the last call.
    assert page.locator("#waterfall .wf-space").evaluate("node => node.style.height") == "200000px"
    assert page.locator("#waterfall .wf-row").count() < 200
    calls = httpx.get(f"{server.url}/api/v1/executions/{ids['wide']}/calls").json()["calls"]
    page.locator("#waterfall").evaluate("node => { node.scrollTop = node.scrollHeight; }")
    page.locator(f'#waterfall .wf-row[data-call="{calls[-1]["call_id"]}"]').wait_for()
    page.locator("#failed-only").check()
    page.locator('#waterfall[data-rows="10"]').wait_for()
    assert {page.locator("#waterfall .wf-row").nth(i).get_attribute("data-outcome") for i in range(10)} == {"failed"}


def test_replay_shows_the_divergence_side_by_side(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, ids = made
    page.goto(f"{server.url}/#/executions/{ids['diverged']}")
    page.locator('#head .chip[data-status="diverged"]').wait_for()
    page.locator("#replay-button").click()
    table = page.locator("#divergence")
    table.wait_for()
    name_row = table.locator("tr", has_text="name")
    assert (
        name_row.locator("td").nth(0).inner_text() == "audit" and name_row.locator("td").nth(1).inner_text() == "step"
    )
    assert "seq 2" in page.locator("#replay-verdict").inner_text()
    page.goto(f"{server.url}/#/executions/{ids['completed']}")
    page.locator("#replay-button").click()
    page.locator('#replay-verdict[data-matches="true"]').wait_for()


def test_fork_at_a_seq_opens_the_new_execution(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, ids = made
    page.goto(f"{server.url}/#/executions/{ids['completed']}")
    page.locator("#fork-at").fill("6")
    page.locator("#fork").click()
    hash_now = lambda: str(page.evaluate("location.hash"))  # noqa: E731
    wait_for(
        lambda: ids["completed"] not in hash_now() and hash_now().startswith("#/executions/"), what="the fork's page"
    )
    page.locator('#head .chip[data-status="completed"]').wait_for()
    assert f"{ids['completed']} at seq 6" in page.locator("#head").inner_text()


def test_the_api_docs_render_from_local_assets(made: tuple[Server, dict[str, str]], page: Any) -> None:
    server, _ = made
    page.goto(server.url + "/docs")
    page.locator(".swagger-ui .title", has_text="Flux").wait_for(timeout=20_000)
    assert page.locator(".opblock").count() > 10


def test_the_console_works_behind_a_token(playwright: Any, tmp_path: Path) -> None:
    """With a token, the browser sends it as HTTP Basic's password on every request of the page
    (the page, its script, the API calls and the event stream)."""
    token = "console-token-5d1e"
    server = Server(str(tmp_path / "store"), tmp_path, token=token)
    signed_in = Browser(playwright, http_credentials={"username": "me", "password": token})
    try:
        with server.client() as api:
            execution_id = start(api, "approval", None, wait=10)["execution_id"]
        page = signed_in.page()
        page.goto(f"{server.url}/#/executions/{execution_id}")
        page.locator('#head .chip[data-status="paused"]').wait_for()
        page.locator("li.pause textarea").fill('"yes"')
        page.locator("li.pause button.resume").click()
        page.locator('#head .chip[data-status="completed"]').wait_for(timeout=15_000)
        page.goto(server.url + "/")
        page.locator(f'tr[data-id="{execution_id}"][data-status="completed"]').wait_for()
        assert signed_in.outside == [] and signed_in.errors == []
        assert httpx.get(server.url + "/").status_code == 401  # without the token, not even the page
    finally:
        signed_in.close()
        server.stop()


def test_the_schedules_page_pauses_resumes_triggers_and_deletes(browser: Browser, tmp_path: Path) -> None:
    """Schedules stored through the store port are listed with their next fires; each button
    changes the store, and a trigger's execution is linked and shows its schedule."""
    server = Server(str(tmp_path / "store"), tmp_path, args=(str(ROOT / "tests" / "schedule_workflows.py"),))
    store = server.store
    create_schedule(store, "nightly", "stamped", cron("30 1 * * *", timezone="Europe/Lisbon"), {"team": "ops"})
    create_schedule(store, "hourly", "greet", interval(hours=1), paused=True)
    page = browser.page()
    try:
        page.goto(server.url + "/")
        page.locator("#nav-schedules").click()
        row = page.locator('#schedules tr[data-name="nightly"]')
        row.wait_for()
        state = get_schedule(store, "nightly")
        fires = row.locator(".fires li")
        assert fires.count() == 5
        assert float(row.locator(".fires li.next").get_attribute("data-at")) == state["next_fire"]
        assert row.locator(".fires li.next .countdown").inner_text().startswith("in ")
        assert "30 1 * * *" in row.locator("td.when").inner_text() and "Europe/Lisbon" in row.inner_text()
        assert "overlap skip" in row.inner_text() and "missed latest" in row.inner_text()
        assert row.locator(".chip").get_attribute("data-status") == "active"
        hourly = page.locator('#schedules tr[data-name="hourly"]')
        assert hourly.get_attribute("data-paused") == "true" and "none while paused" in hourly.inner_text()

        row.locator("button.toggle", has_text="Pause").click()
        page.locator('#schedules tr[data-name="nightly"][data-paused="true"]').wait_for()
        assert get_schedule(store, "nightly")["paused"] is True
        assert "none while paused" in row.inner_text()
        row.locator("button.toggle", has_text="Resume").click()
        page.locator('#schedules tr[data-name="nightly"][data-paused="false"] .fires li.next').wait_for()
        assert get_schedule(store, "nightly")["paused"] is False

        row.locator("button.trigger").click()
        link = page.locator("#triggered a")
        link.wait_for()
        execution_id = str(link.get_attribute("data-id"))
        assert execution_id.startswith("nightly-") and execution_id.endswith("-now")
        assert link.get_attribute("href") == f"#/executions/{execution_id}"
        assert get_schedule(store, "nightly")["last_execution"] == execution_id
        last = page.locator(f'#schedules tr[data-name="nightly"] a.last-execution[href="#/executions/{execution_id}"]')
        last.wait_for()
        link.click()
        page.locator('#head .chip[data-status="completed"]').wait_for(timeout=15_000)
        shown = page.locator('#head #schedule[data-schedule="nightly"][data-trigger="true"]')
        assert "triggered by hand" in shown.inner_text()
        assert '"team": "ops"' in page.locator("#input").inner_text()
        assert '"schedule": "nightly"' in page.locator("#output").inner_text()  # ctx.schedule
        shown.locator("a").click()
        page.locator('#schedules tr.focus[data-name="nightly"]').wait_for()
        _screenshot(page, "console-schedules.png")

        remove = page.locator('#schedules tr[data-name="nightly"] button.delete')
        remove.click()
        assert remove.inner_text() == "Confirm delete"
        assert get_schedule(store, "nightly")["name"] == "nightly"  # one click deletes nothing
        remove.click()
        wait_for(lambda: page.locator('#schedules tr[data-name="nightly"]').count() == 0, what="the row to go")
        with pytest.raises(ScheduleNotFoundError):
            get_schedule(store, "nightly")
        assert httpx.get(f"{server.url}/api/v1/executions/{execution_id}").json()["status"] == "completed"

        page.locator("details summary", has_text="Create a schedule").click()
        page.locator("#new-schedule-name").fill("every-2h")
        page.locator("#new-schedule-workflow").fill("stamped")
        page.locator("#new-schedule-kind").select_option("interval")
        page.locator("#new-schedule-when").fill("2h")
        page.locator("#new-schedule-input").fill('{"$decimal": "1.10"}')
        page.locator("#new-schedule-create").click()
        page.locator('#schedules tr[data-name="every-2h"] .fires li.next').wait_for()
        made = get_schedule(store, "every-2h")
        assert made["spec"]["seconds"] == 7200 and made["input"] == {"$decimal": "1.10"}
        assert page.locator('#schedules tr[data-name="every-2h"] td.when').inner_text() == "every 2h"

        # Text of the store is text on the page: a workflow name is never read as markup.
        create_schedule(store, "odd", "<img src=x onerror=window.__injected=1>", interval(minutes=5))
        page.reload()
        odd = page.locator('#schedules tr[data-name="odd"]')
        odd.wait_for()
        assert odd.locator("td").nth(1).inner_text() == "<img src=x onerror=window.__injected=1>"
        assert page.locator("#schedules img").count() == 0 and page.evaluate("window.__injected") is None
        assert browser.outside == [], f"requests left 127.0.0.1: {browser.outside}"
        assert browser.errors == [], f"the page logged errors: {browser.errors}"
    finally:
        page.close()
        server.stop()
