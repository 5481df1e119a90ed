"""Schedules in `flux serve` (SPEC.md 11.2, 11.3, 14): the API against a real server process on
the file store and the memory store, and on PostgreSQL; the server serves
tests/schedule_workflows.py beside tests/serve_workflows.py, so that a trigger runs `stamped`,
which returns the schedule its header records."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from flux._engine.clock import iso
from flux._engine.schedules import next_after
from flux.domain.schedule import interval
from flux.errors import ScheduleNotFoundError
from flux.schedules import create_schedule, get_schedule
from tests.conftest import ROOT, empty_pg, flux_cmd
from tests.serve_helpers import Server

pytestmark = pytest.mark.slow

SCHEDULE_WORKFLOWS = str(ROOT / "tests" / "schedule_workflows.py")
LISBON = ZoneInfo("Europe/Lisbon")


@pytest.fixture(scope="module", params=["files", "memory"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"schedules-{request.param}")
    store = str(tmp / "store") if request.param == "files" else "memory:schedules"
    running = Server(store, tmp, args=(SCHEDULE_WORKFLOWS,))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _problem(response: httpx.Response, status: int, error: str, *words: str) -> dict[str, Any]:
    """A problem+json answer of `status` naming `error`, whose one-line detail has `words`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["error"] == error and body["title"] == error
    assert body["type"] == f"urn:flux:error:{error}" and body["detail"] and "\n" not in body["detail"]
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    return body  # type: ignore[no-any-return]


def _create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/v1/schedules", json=fields)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/schedules/{fields['name']}"
    return response.json()  # type: ignore[no-any-return]


# -- reading -------------------------------------------------------------------------------------


def test_a_cron_schedule_is_created_listed_and_read_with_its_next_fires(api: httpx.Client) -> None:
    made = _create(
        api,
        name="nightly",
        workflow="stamped",
        cron="30 1 * * *",
        timezone="Europe/Lisbon",
        input={"$decimal": "1.50"},
        overlap="buffer_one",
        missed="all",
        missed_limit=3,
        grace=5,
    )
    assert made["spec"] == {"type": "cron", "expression": "30 1 * * *", "timezone": "Europe/Lisbon"}
    assert made["input"] == {"$decimal": "1.50"}  # kept in its recorded form
    assert (made["overlap"], made["missed"], made["missed_limit"], made["grace"]) == ("buffer_one", "all", 3, 5.0)
    assert made["paused"] is False and made["auto"] is False and made["fires"] == 0
    assert made["last_execution"] is None and made["last_execution_status"] is None and "declared" not in made
    fires = made["next_fires"]
    assert len(fires) == 5 and fires[0] == made["next_fire"] > time.time()
    assert made["next_fire_at"] == iso(made["next_fire"])
    for earlier, later in zip(fires, fires[1:], strict=False):
        assert later == next_after(made["spec"], earlier)  # the fire algorithm's own times
    assert all(dt.datetime.fromtimestamp(at, LISBON).strftime("%H:%M") == "01:30" for at in fires)
    one = api.get("/api/v1/schedules/nightly").json()
    assert one == made
    listed = api.get("/api/v1/schedules").json()
    assert list(listed) == ["items"] and one in listed["items"]
    assert api.get("/api/v1/schedules/nightly", params={"next_fires": 2}).json()["next_fires"] == fires[:2]
    assert api.get("/api/v1/schedules", params={"next_fires": 0}).json()["items"][0]["next_fires"] == []
    _problem(api.get("/api/v1/schedules", params={"next_fires": 101}), 422, "InvalidRequest", "next_fires")


def test_interval_and_once_schedules_show_their_fires(api: httpx.Client) -> None:
    every = _create(api, name="quarter-hour", workflow="greet", interval="15m")
    fires = every["next_fires"]
    assert every["spec"]["seconds"] == 900 and [b - a for a, b in zip(fires, fires[1:], strict=False)] == [900.0] * 4
    seconds = _create(api, name="every-90", workflow="greet", interval=90)
    assert seconds["spec"]["seconds"] == 90
    at = dt.datetime(2099, 12, 24, 18, 0, tzinfo=dt.UTC)
    once = _create(api, name="xmas", workflow="greet", at="2099-12-24T18:00:00+00:00", paused=True)
    assert once["spec"] == {"type": "once", "at": at.timestamp()} and once["paused"] is True
    assert once["next_fires"] == []  # none while paused
    resumed = api.post("/api/v1/schedules/xmas/resume").json()
    assert resumed["next_fires"] == [at.timestamp()]  # once: one fire, then none


# -- acting -----------------------------------------------------------------------------------------


def test_pause_and_resume_are_idempotent_and_the_store_keeps_them(server: Server, api: httpx.Client) -> None:
    _create(api, name="pausable", workflow="stamped", interval="1h")
    for _ in range(2):  # pausing a paused schedule changes nothing, as `flux schedule pause`
        paused = api.post("/api/v1/schedules/pausable/pause")
        assert paused.status_code == 200 and paused.json()["paused"] is True and paused.json()["next_fires"] == []
    if not server.store.startswith("memory:"):
        assert get_schedule(server.store, "pausable")["paused"] is True
    assert api.get("/api/v1/schedules/pausable").json()["paused"] is True
    before = time.time()
    for _ in range(2):
        resumed = api.post("/api/v1/schedules/pausable/resume").json()
        assert resumed["paused"] is False and len(resumed["next_fires"]) == 5
        assert before < resumed["next_fire"] <= time.time() + 3600  # from the first fire after the resume
    if not server.store.startswith("memory:"):
        assert get_schedule(server.store, "pausable")["paused"] is False


def test_trigger_starts_an_execution_that_records_its_schedule_and_runs_here(api: httpx.Client) -> None:
    _create(api, name="reports", workflow="stamped", interval="1d", input={"$decimal": "2.5"}, paused=True)
    response = api.post("/api/v1/schedules/reports/trigger", params={"wait": 20})
    assert response.status_code == 201, response.text
    data = response.json()
    execution_id = data["execution_id"]
    assert response.headers["location"] == f"/api/v1/executions/{execution_id}"
    assert execution_id.startswith("reports-") and execution_id.endswith("-now")
    assert data["workflow"] == "stamped" and data["input"] == {"$decimal": "2.5"}
    assert data["schedule"]["name"] == "reports" and data["schedule"]["trigger"] is True
    assert data["status"] == "completed"  # run by the server, as what it starts
    assert data["output"] == {"schedule": "reports", "at": data["schedule"]["at"]}  # ctx.schedule, ctx.scheduled_at
    state = api.get("/api/v1/schedules/reports").json()
    assert state["last_execution"] == execution_id and state["last_execution_status"] == "completed"
    assert state["fires"] == 0 and state["paused"] is True  # a trigger is no fire and changes no pause
    assert api.get(f"/api/v1/executions/{execution_id}").json()["schedule"] == data["schedule"]
    listed = api.get("/api/v1/executions", params={"prefix": "reports-"}).json()["items"]
    assert [row["execution_id"] for row in listed] == [execution_id]
    again = api.post("/api/v1/schedules/reports/trigger").json()  # without wait: answered once it exists
    assert again["execution_id"] != execution_id and again["status"] in ("created", "running", "completed")
    by_hand = api.post(
        "/api/v1/workflows/stamped/executions", params={"execution_id": "reports-by-hand", "wait": 20}, json=None
    )
    assert by_hand.status_code == 201, by_hand.text  # its id looks like the schedule's; its header says no schedule
    by_schedule = api.get("/api/v1/executions", params={"schedule": "reports"}).json()["items"]
    assert sorted(row["execution_id"] for row in by_schedule) == sorted([execution_id, again["execution_id"]])
    assert api.get("/api/v1/executions", params={"schedule": "report"}).json()["items"] == []


def test_delete_leaves_the_executions(api: httpx.Client) -> None:
    _create(api, name="short-lived", workflow="stamped", interval="1h")
    execution_id = api.post("/api/v1/schedules/short-lived/trigger", params={"wait": 20}).json()["execution_id"]
    deleted = api.delete("/api/v1/schedules/short-lived")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "short-lived"}
    _problem(api.get("/api/v1/schedules/short-lived"), 404, "ScheduleNotFoundError", "short-lived")
    _problem(api.delete("/api/v1/schedules/short-lived"), 404, "ScheduleNotFoundError")
    assert api.get(f"/api/v1/executions/{execution_id}").json()["status"] == "completed"
    assert "short-lived" not in {s["name"] for s in api.get("/api/v1/schedules").json()["items"]}


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on a file store, which other processes share (a memory store lives in the
    server's process only)."""
    tmp = tmp_path_factory.mktemp("schedules-shared")
    running = Server(str(tmp / "store"), tmp, args=(SCHEDULE_WORKFLOWS,))
    yield running
    running.stop()


def test_the_command_line_and_the_server_share_the_stores_schedules(file_server: Server) -> None:
    with file_server.client() as api:
        _share_schedules(file_server.store, api)


def _share_schedules(store: str, api: httpx.Client) -> None:
    cwd = Path(store).parent
    made = flux_cmd(
        "schedule",
        "create",
        "from-cli",
        "stamped",
        "--cron",
        "0 9 * * MON-FRI",
        "--tz",
        "Europe/Lisbon",
        "--json",
        "--store",
        store,
        cwd=cwd,
    )
    assert made.returncode == 0, made.stderr
    served = api.get("/api/v1/schedules/from-cli").json()
    assert served["next_fire"] == orjson.loads(made.stdout)["next_fire"] == served["next_fires"][0]
    assert api.post("/api/v1/schedules/from-cli/pause").json()["paused"] is True
    listed = orjson.loads(flux_cmd("schedule", "list", "--json", "--store", store, cwd=cwd).stdout)
    assert {s["name"]: s["paused"] for s in listed}["from-cli"] is True
    api.delete("/api/v1/schedules/from-cli")
    gone = flux_cmd("schedule", "pause", "from-cli", "--store", store, cwd=cwd)
    assert gone.returncode == 2 and "no schedule named 'from-cli'" in gone.stderr


# -- errors ---------------------------------------------------------------------------------------


def test_an_unknown_schedule_is_a_404_problem_on_every_route(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/v1/schedules/nobody"),
        ("POST", "/api/v1/schedules/nobody/pause"),
        ("POST", "/api/v1/schedules/nobody/resume"),
        ("POST", "/api/v1/schedules/nobody/trigger"),
        ("DELETE", "/api/v1/schedules/nobody"),
    ]:
        body = _problem(api.request(method, path), 404, "ScheduleNotFoundError", "no schedule named 'nobody'")
        assert body["schedule"] == "nobody" and body["instance"] == path
    _problem(api.get("/api/v1/schedules/-bad"), 422, "InvalidOptionError", "schedule name '-bad'")
    _problem(api.post("/api/v1/schedules/a%20b/pause"), 422, "InvalidOptionError", "schedule name 'a b'")


@pytest.mark.parametrize(
    ("fields", "status", "error", "words"),
    [
        ({"workflow": "stamped", "cron": "0 1 * * *"}, 422, "BadRequest", ("name is missing",)),
        ({"name": "s"}, 422, "BadRequest", ("workflow is missing",)),
        ({"name": 7, "workflow": "stamped", "cron": "0 1 * * *"}, 422, "BadRequest", ("name must be a string",)),
        ({"name": "s", "workflow": "stamped"}, 422, "InvalidOptionError", ("one of cron, interval or at",)),
        (
            {"name": "s", "workflow": "stamped", "cron": "0 1 * * *", "interval": "5m"},
            422,
            "InvalidOptionError",
            ("one of cron, interval or at",),
        ),
        (
            {"name": "s", "workflow": "stamped", "cron": "61 * * * *"},
            422,
            "InvalidOptionError",
            ("cron", "field 1 (minute)"),
        ),
        (
            {"name": "s", "workflow": "stamped", "cron": "0 1 * * *", "timezone": "Mars/Base"},
            422,
            "InvalidOptionError",
            ("timezone='Mars/Base'",),
        ),
        ({"name": "s", "workflow": "stamped", "interval": "5x"}, 422, "InvalidOptionError", ("interval '5x'",)),
        ({"name": "s", "workflow": "stamped", "interval": -5}, 422, "InvalidOptionError", ("interval -5",)),
        ({"name": "s", "workflow": "stamped", "interval": True}, 422, "BadRequest", ("interval must be",)),
        (
            {"name": "s", "workflow": "stamped", "interval": "99999w"},
            422,
            "InvalidOptionError",
            ("interval '99999w'", "too long"),
        ),
        ({"name": "s", "workflow": "", "interval": "1h"}, 422, "BadRequest", ("workflow is missing",)),
        ({"name": "s", "workflow": "stamped", "at": "tomorrow"}, 422, "InvalidOptionError", ("at 'tomorrow'",)),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "missed": "never"},
            422,
            "InvalidOptionError",
            ("missed='never'",),
        ),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "overlap": "queue"},
            422,
            "InvalidOptionError",
            ("overlap='queue'",),
        ),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "missed_limit": 0},
            422,
            "InvalidOptionError",
            ("missed_limit=0",),
        ),
        ({"name": "s", "workflow": "stamped", "interval": "1h", "grace": -1}, 422, "InvalidOptionError", ("grace=-1",)),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "paused": "yes"},
            422,
            "BadRequest",
            ("paused must be true or false",),
        ),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "tz": "UTC"},
            422,
            "BadRequest",
            ("unknown field 'tz'",),
        ),
        (
            {"name": "s", "workflow": "stamped", "interval": "1h", "input": {"$decimal": "zz"}},
            422,
            "DecodeError",
            ("input:",),
        ),
        (
            {"name": "no spaces", "workflow": "stamped", "interval": "1h"},
            422,
            "InvalidOptionError",
            ("schedule name 'no spaces'",),
        ),
    ],
)
def test_bad_input_to_create_is_a_422_naming_the_field(
    api: httpx.Client, fields: dict[str, Any], status: int, error: str, words: tuple[str, ...]
) -> None:
    _problem(api.post("/api/v1/schedules", json=fields), status, error, *words)
    assert api.get("/api/v1/schedules/s").status_code == 404  # nothing was stored


def test_other_refusals(api: httpx.Client) -> None:
    _problem(api.post("/api/v1/schedules"), 422, "BadRequest", "JSON object")
    _problem(api.post("/api/v1/schedules", content="{nope"), 422, "BadRequest", "not valid JSON")
    _problem(api.post("/api/v1/schedules", json=[1]), 422, "BadRequest", "JSON object")
    _create(api, name="taken", workflow="stamped", interval="1h")
    taken = _problem(
        api.post("/api/v1/schedules", json={"name": "taken", "workflow": "greet", "interval": "2h"}),
        409,
        "ScheduleExistsError",
        "exists already",
    )
    assert taken["schedule"] == "taken"
    _create(api, name="elsewhere", workflow="not_served_here", interval="1h")  # a worker elsewhere may load it
    _problem(api.post("/api/v1/schedules/elsewhere/trigger"), 404, "WorkflowLoadError", "not_served_here")
    assert api.get("/api/v1/schedules/elsewhere").json()["last_execution"] is None  # nothing was started
    refused = api.post("/api/v1/schedules/taken/pause", headers={"Origin": "https://elsewhere.example"})
    _problem(refused, 403, "CrossSiteRequest")
    refused = api.delete("/api/v1/schedules/taken", headers={"Sec-Fetch-Site": "cross-site"})
    _problem(refused, 403, "CrossSiteRequest")
    assert api.get("/api/v1/schedules/taken").json()["paused"] is False


def test_the_schedule_routes_are_in_the_openapi_document(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/schedules"]) == {"get", "post"}
    assert set(paths["/api/v1/schedules/{name}"]) == {"get", "delete"}
    for action in ("pause", "resume", "trigger"):
        assert list(paths[f"/api/v1/schedules/{{name}}/{action}"]) == ["post"]
    assert list(paths["/api/v1/schedules/{name}"]["get"]["responses"]["404"]["content"]) == ["application/problem+json"]


# -- PostgreSQL ---------------------------------------------------------------------------------------


def test_the_schedule_routes_on_a_postgresql_store(pg_url: str, tmp_path: Path) -> None:
    """The same routes over `flux.schedules` rows: a schedule stored through the store port is
    listed, a pause made here is in the table, a trigger runs here."""
    from flux._engine.stores.postgres import PostgresStore

    empty_pg(pg_url)
    store = PostgresStore(pg_url)
    create_schedule(store, "by-port", "stamped", interval(hours=1))
    server = Server(pg_url, tmp_path, args=(SCHEDULE_WORKFLOWS,))
    try:
        with server.client() as api:
            _create(api, name="nightly", workflow="stamped", cron="30 1 * * *", timezone="Europe/Lisbon")
            listed = api.get("/api/v1/schedules").json()["items"]
            assert [s["name"] for s in listed] == ["by-port", "nightly"]
            assert all(len(s["next_fires"]) == 5 for s in listed)
            assert listed[0]["next_fire"] == get_schedule(store, "by-port")["next_fire"]
            for _ in range(2):
                assert api.post("/api/v1/schedules/nightly/pause").json()["paused"] is True
            assert get_schedule(store, "nightly")["paused"] is True
            assert api.post("/api/v1/schedules/nightly/resume").json()["paused"] is False
            assert get_schedule(store, "nightly")["paused"] is False
            started = api.post("/api/v1/schedules/by-port/trigger", params={"wait": 20})
            assert started.status_code == 201, started.text
            data = started.json()
            assert data["status"] == "completed" and data["schedule"]["trigger"] is True
            assert get_schedule(store, "by-port")["last_execution"] == data["execution_id"]
            assert store.header(data["execution_id"])["schedule"]["name"] == "by-port"
            assert api.delete("/api/v1/schedules/by-port").json() == {"deleted": "by-port"}
            with pytest.raises(ScheduleNotFoundError):
                get_schedule(store, "by-port")
            _problem(api.get("/api/v1/schedules/by-port"), 404, "ScheduleNotFoundError", "by-port")
            _problem(
                api.post("/api/v1/schedules", json={"name": "nightly", "workflow": "stamped", "interval": "1h"}),
                409,
                "ScheduleExistsError",
            )
    finally:
        server.stop()
