"""The HTTP API of `flux serve` (SPEC.md 11), against a real server process on loopback, on the
file store and on the memory store."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flux._engine.journal import check_journal
from tests.serve_helpers import Server, sse_events, start, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["files", "memory"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    store = str(tmp / "store") if request.param == "files" else "memory:api"
    running = Server(store, tmp)
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _journal(server: Server, api: httpx.Client, execution_id: str) -> bytes:
    """The stored journal: the file itself on the file store, else the records route."""
    if server.store.startswith("memory:"):
        return api.get(f"/api/v1/executions/{execution_id}/records").content
    return (Path(server.store) / "executions" / f"{execution_id}.jsonl").read_bytes()


def _problem(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["error"] == error and body["title"] == error
    assert body["type"] == f"urn:flux:error:{error}" and body["detail"]
    return body  # type: ignore[no-any-return]


# -- the server ---------------------------------------------------------------------------------


def test_healthz_openapi_and_docs_are_served_locally(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/api/v1/executions",
        "/api/v1/executions/{execution_id}/records/stream",
        "/workflows/{name}/run/{mode}",
    ):
        assert path in spec["paths"], path
    assert list(spec["paths"]["/api/v1/executions"]["get"]["responses"]["422"]["content"]) == [
        "application/problem+json"
    ]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text
    assert api.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    console = api.get("/")
    assert console.status_code == 200 and "/static/console.js" in console.text and "https://" not in console.text
    assert "default-src 'self'" in console.headers["content-security-policy"]


def test_the_served_workflows_are_listed(api: httpx.Client) -> None:
    names = {w["name"] for w in api.get("/api/v1/workflows").json()}
    assert {"greet", "approval", "explode", "slow", "sleeper", "counter", "retrying", "wide", "parent"} <= names


# -- starting -------------------------------------------------------------------------------------


def test_start_runs_the_workflow_and_wait_returns_its_output(api: httpx.Client) -> None:
    response = api.post("/api/v1/workflows/greet/executions", params={"wait": 10}, content="21")
    assert response.status_code == 201
    data = response.json()
    assert response.headers["location"] == f"/api/v1/executions/{data['execution_id']}"
    assert data["status"] == "completed" and data["output"] == 42 and data["input"] == 21
    assert data["call_count"] == 1 and data["records"] == 5 and "calls" not in data
    with_calls = api.get(f"/api/v1/executions/{data['execution_id']}", params={"calls": True}).json()
    assert with_calls["calls"] == api.get(f"/api/v1/executions/{data['execution_id']}/calls").json()["calls"]


def test_start_without_wait_returns_once_the_header_is_durable(api: httpx.Client) -> None:
    data = start(api, "slow", 0.5)
    assert data["status"] in ("created", "running")
    done = wait_for(
        lambda: api.get(f"/api/v1/executions/{data['execution_id']}").json()["status"] == "completed",
        what="slow to end",
    )
    assert done


def test_start_with_an_execution_id_is_idempotent_even_when_concurrent(server: Server, api: httpx.Client) -> None:
    first = api.post("/api/v1/workflows/greet/executions", params={"execution_id": "order-7", "wait": 10}, content="3")
    again = api.post("/api/v1/workflows/greet/executions", params={"execution_id": "order-7", "wait": 10}, content="99")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["input"] == 3 and again.json()["output"] == 6

    def go(_: int) -> str:
        with server.client() as c:
            r = c.post(
                "/api/v1/workflows/slow/executions", params={"execution_id": "same-key", "wait": 10}, content="0.3"
            )
            assert r.status_code in (200, 201), r.text
            return str(r.json()["execution_id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(go, range(8))) == {"same-key"}
    listed = api.get("/api/v1/executions", params={"prefix": "same-key"}).json()["items"]
    assert [row["execution_id"] for row in listed] == ["same-key"]
    records = [json.loads(line) for line in _journal(server, api, "same-key").splitlines()]
    assert sum(1 for r in records if r["kind"] == "task_started") == 1
    assert sum(1 for r in records if r["kind"] == "workflow_started") == 1


def test_an_execution_id_of_another_workflow_is_refused(api: httpx.Client) -> None:
    start(api, "greet", 1, execution_id="taken-by-greet", wait=10)
    _problem(
        api.post("/api/v1/workflows/explode/executions", params={"execution_id": "taken-by-greet"}),
        409,
        "ExecutionStateError",
    )


def test_inputs_and_outputs_keep_their_recorded_form(api: httpx.Client) -> None:
    decimal = api.post("/api/v1/workflows/echo/executions", params={"wait": 10}, json={"$decimal": "1.10"}).json()
    assert decimal["input"] == {"$decimal": "1.10"}
    assert decimal["output"] == {"type": "Decimal", "value": {"$decimal": "1.10"}, "plus_one": {"$decimal": "2.10"}}
    big = api.post(
        "/api/v1/workflows/echo/executions", params={"wait": 10}, json={"$int": "123456789012345678901234567890"}
    ).json()
    assert big["output"]["plus_one"] == {"$int": "123456789012345678901234567891"}
    keys = api.post("/api/v1/workflows/echo/executions", params={"wait": 10}, json={"$dict": [[1, "one"]]}).json()
    assert keys["output"]["type"] == "dict" and keys["output"]["value"] == {"$dict": [[1, "one"]]}


# -- reading ---------------------------------------------------------------------------------------


def test_list_filters_and_pages_with_a_keyset_cursor(api: httpx.Client) -> None:
    made = [start(api, "greet", n, execution_id=f"page-{n}", wait=10)["execution_id"] for n in range(7)]
    start(api, "explode", "x", execution_id="page-failed", wait=10)
    seen: list[str] = []
    cursor = None
    while True:
        body = api.get(
            "/api/v1/executions",
            params={"prefix": "page-", "limit": 3, "workflow": "greet", **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [row["execution_id"] for row in body["items"]]
        cursor = body["cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    failed = api.get("/api/v1/executions", params={"prefix": "page-", "status": "failed"}).json()["items"]
    assert [r["execution_id"] for r in failed] == ["page-failed"]
    both = api.get("/api/v1/executions", params={"prefix": "page-", "status": "failed,completed"}).json()["items"]
    assert len(both) == 8
    row = both[0]
    assert {"execution_id", "workflow", "status", "created", "updated", "duration_ms", "calls", "records"} <= set(row)
    third = api.get(f"/api/v1/executions/{made[3]}").json()["created"]
    after = api.get(
        "/api/v1/executions", params={"prefix": "page-", "workflow": "greet", "created_after": third}
    ).json()["items"]
    assert [r["execution_id"] for r in after] == list(reversed(made[3:]))
    before = api.get(
        "/api/v1/executions", params={"prefix": "page-", "workflow": "greet", "created_before": third}
    ).json()["items"]
    assert [r["execution_id"] for r in before] == list(reversed(made[:3]))
    _problem(api.get("/api/v1/executions", params={"cursor": "nonsense"}), 422, "InvalidOptionError")
    _problem(api.get("/api/v1/executions", params={"created_after": "yesterday"}), 422, "BadRequest")
    _problem(api.get("/api/v1/executions", params={"limit": 0}), 422, "InvalidRequest")


def test_a_failed_execution_shows_its_error_with_the_traceback(api: httpx.Client) -> None:
    data = start(api, "explode", "the disk is full", wait=10)
    assert data["status"] == "failed" and data["output"] is None
    error = data["error"]
    assert error["type"] == "ExecutionError" and "the disk is full" in error["message"]
    assert "Traceback" in error["traceback"] and "serve_workflows.py" in error["traceback"]


def test_one_execution_shows_parent_children_pauses_and_timers(api: httpx.Client) -> None:
    parent = start(api, "parent", 5, wait=10)
    assert parent["output"] == 10
    ((call_id, child_id),) = parent["children"].items()
    child = api.get(f"/api/v1/executions/{child_id}").json()
    assert child["parent"] == {"execution_id": parent["execution_id"], "call_id": call_id} and child["output"] == 10
    paused = start(api, "two_pauses", None, wait=10)
    assert paused["status"] == "paused"
    assert sorted((w["name"], w["call_id"]) for w in paused["waiting"]) == [("left", "1.1"), ("right", "2.1")]
    sleeping = start(api, "sleeper", 3600, wait=0.5)
    data = api.get(f"/api/v1/executions/{sleeping['execution_id']}").json()
    assert data["status"] == "running" and data["owner"]["pid"] > 0
    (timer,) = data["timers"]
    assert timer["call_id"] == "1"
    (pending,) = data["pending"]["timers"]
    assert pending["wake_at"] > 0
    row = api.get("/api/v1/executions", params={"prefix": sleeping["execution_id"]}).json()["items"][0]
    assert row["wake_at"] == pending["wake_at"]
    api.post(f"/api/v1/executions/{sleeping['execution_id']}/cancel")


def test_calls_are_the_show_rows_with_retries_as_segments(api: httpx.Client) -> None:
    data = start(api, "retrying", {"key": f"calls-{id(api)}", "failures": 2}, wait=20)
    assert data["status"] == "completed"
    (row,) = api.get(f"/api/v1/executions/{data['execution_id']}/calls").json()["calls"]
    assert row["call_id"] == "1" and row["name"] == "flaky" and row["outcome"] == "completed" and row["attempts"] == 3
    kinds = [(s["kind"], s.get("outcome")) for s in row["segments"]]
    assert kinds == [
        ("attempt", "failed"),
        ("wait", None),
        ("attempt", "failed"),
        ("wait", None),
        ("attempt", "completed"),
    ]
    wide = start(api, "wide", {"n": 20, "fail_every": 5}, wait=20)
    assert wide["output"] == {"ok": 16, "failed": 4}
    failed = api.get(f"/api/v1/executions/{wide['execution_id']}/calls", params={"outcome": "failed"}).json()["calls"]
    assert [r["args"][0] for r in failed] == [4, 9, 14, 19]
    assert all(r["error"]["type"] == "ValueError" for r in failed)


def test_records_are_the_journal_bytes_as_ndjson(server: Server, api: httpx.Client) -> None:
    data = start(api, "counter", {"n": 6}, wait=10)
    execution_id = data["execution_id"]
    response = api.get(f"/api/v1/executions/{execution_id}/records")
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-flux-records"] == str(data["records"])
    body = response.content
    assert check_journal(body, "response", execution_id).valid_size == len(body)
    assert body == _journal(server, api, execution_id)
    tail = api.get(f"/api/v1/executions/{execution_id}/records", params={"from_seq": 3}).content
    assert body.endswith(tail) and tail.startswith(b'{"seq":3,')
    download = api.get(f"/api/v1/executions/{execution_id}/records", params={"download": 1})
    assert download.headers["content-disposition"] == f'attachment; filename="{execution_id}.jsonl"'


# -- live updates -------------------------------------------------------------------------------


def _read_events(
    client: httpx.Client, url: str, headers: dict[str, str], stop_after: int | None = None
) -> list[dict[str, str]]:
    out = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response.iter_lines()):
            out.append(event)
            if stop_after is not None and sum(1 for e in out if e.get("event") == "record") >= stop_after:
                break
            if event.get("event") == "end":
                break
    return out


def test_sse_reconnect_with_last_event_id_loses_and_repeats_nothing(server: Server, api: httpx.Client) -> None:
    data = start(api, "counter", {"n": 30, "delay": 0.03})
    execution_id = data["execution_id"]
    url = f"/api/v1/executions/{execution_id}/records/stream"
    got: list[dict[str, str]] = []
    last = None
    for _ in range(4):  # three disconnects in the middle, then to the end
        headers = {"Last-Event-ID": last} if last is not None else {}
        events = _read_events(api, url, headers, stop_after=None if len(got) > 40 else 15)
        records = [e for e in events if e.get("event") == "record"]
        got += records
        if records:
            last = records[-1]["id"]
        if any(e.get("event") == "end" for e in events):
            break
    seqs = [int(e["id"]) for e in got]
    lines = _journal(server, api, execution_id).splitlines()
    assert seqs == list(range(len(lines))), "every record once, in order"
    assert [e["data"].encode() for e in got] == lines
    end = _read_events(api, url, {"Last-Event-ID": str(len(lines) - 1)})
    assert end[0] == {"retry": "1000"}
    assert [e.get("event") for e in end[1:]] == ["end"] and json.loads(end[1]["data"])["status"] == "completed"
    from_seq = _read_events(api, url + "?from_seq=60", {})
    assert [int(e["id"]) for e in from_seq if e.get("event") == "record"] == list(range(60, len(lines)))
    _problem(api.get(url, headers={"Last-Event-ID": "x"}), 422, "BadRequest")
    _problem(api.get("/api/v1/executions/missing/records/stream"), 404, "ExecutionNotFoundError")


def test_a_paused_execution_streams_its_resume(api: httpx.Client) -> None:
    data = start(api, "approval", None, wait=10)
    execution_id = data["execution_id"]
    seen: list[dict[str, str]] = []
    ready = threading.Event()

    def follow() -> None:
        with api.stream(
            "GET",
            f"/api/v1/executions/{execution_id}/records/stream",
            headers={"Last-Event-ID": str(data["records"] - 1)},
        ) as response:
            ready.set()
            for event in sse_events(response.iter_lines()):
                seen.append(event)
                if event.get("event") == "end":
                    return

    thread = threading.Thread(target=follow)
    thread.start()
    ready.wait(10)
    resumed = api.post(
        f"/api/v1/executions/{execution_id}/resume",
        params={"wait": 10},
        json={"input": {"ok": True}, "pause": "approve"},
    )
    assert resumed.json()["status"] == "completed"
    thread.join(20)
    records = [e for e in seen if e.get("event") == "record"]
    kinds = [json.loads(e["data"])["kind"] for e in records]
    assert kinds[0] == "workflow_resumed" and kinds[-1] == "workflow_completed"
    assert int(records[0]["id"]) == data["records"]


# -- acting -------------------------------------------------------------------------------------


def test_resume_answers_the_named_pause(api: httpx.Client) -> None:
    data = start(api, "two_pauses", None, wait=10)
    execution_id = data["execution_id"]
    _problem(api.post(f"/api/v1/executions/{execution_id}/resume", json={"input": 1}), 409, "ExecutionStateError")
    _problem(
        api.post(f"/api/v1/executions/{execution_id}/resume", json={"input": 1, "pause": "middle"}),
        409,
        "ExecutionStateError",
    )
    api.post(f"/api/v1/executions/{execution_id}/resume", params={"wait": 10}, json={"input": "R", "pause": "right"})
    done = api.post(
        f"/api/v1/executions/{execution_id}/resume",
        params={"wait": 10},
        json={"input": {"$tuple": [1, 2]}, "pause": "1.1"},
    ).json()
    assert done["status"] == "completed" and done["output"] == [{"$tuple": [1, 2]}, "R"]
    _problem(api.post(f"/api/v1/executions/{execution_id}/resume", json={"input": 1}), 409, "ExecutionStateError")
    _problem(api.post(f"/api/v1/executions/{execution_id}/resume", content="{not json"), 422, "BadRequest")


def test_a_detached_resume_records_the_answer_and_runs_nothing_here(server: Server, api: httpx.Client) -> None:
    data = start(api, "two_pauses", None, wait=10)
    execution_id = data["execution_id"]
    url = f"/api/v1/executions/{execution_id}/resume"
    _problem(api.post(url, json={"input": "R", "pause": "right", "detach": 1}), 422, "BadRequest")
    handed = api.post(url, json={"input": "R", "pause": "right", "detach": True})
    assert handed.status_code == 200, handed.text
    # Answered and durable, left to whoever runs the store's work: nothing ran here.
    assert handed.json()["status"] == "interrupted" and handed.json()["output"] is None
    journal = [json.loads(line) for line in _journal(server, api, execution_id).splitlines()]
    assert journal[-1]["kind"] == "workflow_resumed" and journal[-1]["input"] == "R" and "call_id" in journal[-1]
    # The run taken up later (here, continued by the server) finds the answer: only the other
    # pause waits then.
    continued = api.post(url, params={"wait": 10}, json={}).json()
    assert continued["status"] == "paused" and [w["name"] for w in continued["waiting"]] == ["left"], continued
    done = api.post(url, params={"wait": 10}, json={"input": 1}).json()
    assert done["status"] == "completed" and done["output"] == [1, "R"], done


def test_cancel_stops_a_running_execution_and_refuses_a_finished_one(api: httpx.Client) -> None:
    data = start(api, "slow", 60)
    wait_for(
        lambda: api.get(f"/api/v1/executions/{data['execution_id']}").json()["pending"]["running"],
        what="the body to start",
    )
    cancelled = api.post(f"/api/v1/executions/{data['execution_id']}/cancel", params={"wait": 20})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    _problem(api.post(f"/api/v1/executions/{data['execution_id']}/cancel"), 409, "ExecutionStateError")
    paused = start(api, "approval", None, wait=10)
    assert (
        api.post(f"/api/v1/executions/{paused['execution_id']}/cancel", params={"wait": 20}).json()["status"]
        == "cancelled"
    )


def test_fork_at_a_seq_makes_a_new_execution_and_runs_it(api: httpx.Client) -> None:
    source = start(api, "counter", {"n": 4}, wait=10)
    source_id = source["execution_id"]
    calls = api.get(f"/api/v1/executions/{source_id}/calls").json()["calls"]
    second = calls[1]  # tick(1) -> 1: completed at its end_seq
    fork = api.post(
        f"/api/v1/executions/{source_id}/fork",
        params={"wait": 10},
        json={"at": second["end_seq"] + 1, "set_result": {"seq": second["end_seq"], "value": 100}},
    )
    assert fork.status_code == 201
    data = fork.json()
    assert data["execution_id"] != source_id and data["forked_from"] == {
        "execution_id": source_id,
        "seq": second["end_seq"] + 1,
    }
    assert data["status"] == "completed" and data["output"] == 0 + 100 + 2 + 3
    assert api.get(f"/api/v1/executions/{source_id}").json()["output"] == 6
    created = api.post(f"/api/v1/executions/{source_id}/fork", json={"at": 1, "run": False}).json()
    assert created["status"] in ("created", "interrupted") and created["records"] == 1
    _problem(api.post(f"/api/v1/executions/{source_id}/fork", json={"at": 999}), 422, "BadRequest")
    _problem(api.post(f"/api/v1/executions/{source_id}/fork", json={"at": "two"}), 422, "BadRequest")


def test_replay_against_the_loaded_code_matches(api: httpx.Client) -> None:
    data = start(api, "counter", {"n": 3}, wait=10)
    result = api.post(f"/api/v1/executions/{data['execution_id']}/replay").json()
    assert result["status"] == "completed" and result["matches"] is True and result["records"] == data["records"]
    assert "calls" not in result
    with_calls = api.post(f"/api/v1/executions/{data['execution_id']}/replay", params={"calls": True}).json()
    assert [c["call_id"] for c in with_calls["calls"]] == ["1", "2", "3"]


def test_diff_of_two_executions(api: httpx.Client) -> None:
    a = start(api, "greet", 1, wait=10)["execution_id"]
    b = start(api, "greet", 2, wait=10)["execution_id"]
    diff = api.get(f"/api/v1/executions/{a}/diff/{b}").json()
    assert diff["same"] is False and diff["first"]["what"] == "input"
    assert {d["what"] for d in diff["differences"]} >= {"input", "call 1 step: args[0]", "output"}
    assert api.get(f"/api/v1/executions/{a}/diff/{a}").json()["same"] is True
    other = start(api, "explode", "x", wait=10)["execution_id"]
    _problem(api.get(f"/api/v1/executions/{a}/diff/{other}"), 409, "ExecutionStateError")


# -- errors ---------------------------------------------------------------------------------------


def test_errors_are_problem_json_naming_the_flux_error(api: httpx.Client) -> None:
    missing = _problem(api.get("/api/v1/executions/nothing-here"), 404, "ExecutionNotFoundError")
    assert missing["execution_id"] == "nothing-here" and missing["instance"] == "/api/v1/executions/nothing-here"
    _problem(api.get("/api/v1/executions/-bad-id"), 422, "InvalidExecutionIdError")
    _problem(api.post("/api/v1/workflows/nope/executions"), 404, "WorkflowLoadError")
    _problem(
        api.post("/api/v1/workflows/greet/executions", params={"execution_id": "a/b"}), 422, "InvalidExecutionIdError"
    )
    _problem(api.post("/api/v1/workflows/greet/executions", params={"wait": -1}), 422, "InvalidRequest")
    _problem(api.get("/api/v1/nowhere"), 404, "NotFound")
    _problem(api.delete("/api/v1/executions"), 405, "MethodNotAllowed")
    _problem(api.post("/api/v1/workflows/echo/executions", json={"$decimal": "zz"}), 422, "DecodeError")
    _problem(api.post("/api/v1/workflows/echo/executions", json={"$nonsense": 1}), 422, "DecodeError")


# -- Flux's own routes ----------------------------------------------------------------------------


def test_flux_routes_run_sync_async_and_stream(api: httpx.Client) -> None:
    listed = api.get("/workflows").json()
    assert {"name": "greet", "version": 1, "description": "One task: completes at once."} in listed
    sync = api.post("/workflows/greet/run/sync", content="4").json()
    assert (
        sync["state"] == "COMPLETED" and sync["output"] == 8 and sync["workflow_name"] == "greet" and sync["input"] == 4
    )
    assert sync["completed_at"] == sync["updated_at"]
    detailed = api.post("/workflows/greet/run/sync", params={"detailed": True}, content="5").json()
    assert [e["type"] for e in detailed["events"]] == [
        "WORKFLOW_STARTED",
        "TASK_STARTED",
        "TASK_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    started = api.post("/workflows/slow/run/async", content="0.3").json()
    assert started["state"] in ("CREATED", "RUNNING")
    status = wait_for(
        lambda: (
            (s := api.get(f"/workflows/slow/status/{started['execution_id']}").json())["state"] == "COMPLETED" and s
        ),
        what="COMPLETED",
    )
    assert status["output"] == 0.3
    with api.stream("POST", "/workflows/counter/run/stream", content=json.dumps({"n": 3})) as response:
        events = list(sse_events(response.iter_lines()))
    names = [e["event"] for e in events]
    assert (
        names[0] == "WORKFLOW_STARTED"
        and names.count("TASK_COMPLETED") == 3
        and names[-2:] == ["WORKFLOW_COMPLETED", "result"]
    )
    assert json.loads(events[-1]["data"])["output"] == 3
    _problem(api.post("/workflows/greet/run/later", content="1"), 422, "BadRequest")
    _problem(api.post("/workflows/unknown/run/sync", content="1"), 404, "WorkflowLoadError")


def test_flux_routes_resume_status_and_cancel(api: httpx.Client) -> None:
    paused = api.post("/workflows/approval/run/sync").json()
    assert paused["state"] == "PAUSED" and paused["waiting"][0]["name"] == "approve"
    execution_id = paused["execution_id"]
    _problem(api.get(f"/workflows/greet/status/{execution_id}"), 404, "ExecutionNotFoundError")
    resumed = api.post(f"/workflows/approval/resume/{execution_id}/sync", json={"by": "ops"}).json()
    assert resumed["state"] == "COMPLETED" and resumed["output"] == {"first": 2, "answer": {"by": "ops"}}
    running = api.post("/workflows/slow/run/async", content="60").json()
    asked = api.get(f"/workflows/slow/cancel/{running['execution_id']}").json()
    assert asked["state"] in ("CANCELLING", "CANCELLED")
    wait_for(
        lambda: api.get(f"/workflows/slow/status/{running['execution_id']}").json()["state"] == "CANCELLED",
        what="CANCELLED",
    )
    other = api.post("/workflows/slow/run/async", content="60").json()
    assert (
        api.get(f"/workflows/slow/cancel/{other['execution_id']}", params={"mode": "sync"}).json()["state"]
        == "CANCELLED"
    )
    with api.stream("POST", "/workflows/approval/run/stream") as response:
        events = list(sse_events(response.iter_lines()))
    assert [e["event"] for e in events][-2:] == ["WORKFLOW_PAUSED", "result"]
    assert json.loads(events[-1]["data"])["state"] == "PAUSED"
