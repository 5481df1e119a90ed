"""Who may call `flux serve`: the token, the Host header, requests from other sites, and what
never appears in an answer (the token, secrets)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve_helpers import ROOT, WORKFLOWS, Server, free_port, sse_events, start

pytestmark = pytest.mark.slow

TOKEN = "tok-3f9a1c77e2b04d5d9b1a"
SECRET = "s3cr3t-v4lue-91c2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("guarded")
    running = Server(str(tmp / "store"), tmp, token=TOKEN, env={"SERVE_TEST_SECRET": SECRET})
    yield running
    running.stop()


def _basic(password: str, user: str = "flux") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_every_route_but_healthz_needs_the_token(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        for method, path in [
            ("GET", "/"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/api/v1/executions"),
            ("POST", "/api/v1/workflows/greet/executions"),
            ("GET", "/workflows"),
            ("GET", "/static/console.js"),
        ]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["error"] == "Unauthorized"
            assert sorted(v.split()[0] for v in response.headers.get_list("www-authenticate")) == ["Basic", "Bearer"]
        for header in (
            f"Bearer {TOKEN}x",
            f"Bearer {TOKEN[:-1]}",
            "Bearer",
            _basic(TOKEN + "x"),
            _basic("", TOKEN),
            "Basic !!",
            TOKEN,
        ):
            assert anonymous.get("/api/v1/executions", headers={"Authorization": header}).status_code == 401, header
        assert anonymous.get("/api/v1/executions", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert anonymous.get("/api/v1/executions", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert anonymous.get("/", headers={"Authorization": _basic(TOKEN)}).status_code == 200


def test_the_token_and_secrets_never_appear_in_an_answer(guarded: Server) -> None:
    with guarded.client() as api:
        data = start(api, "uses_secret", None, wait=10)
        assert data["status"] == "completed" and data["output"] == "the secret is [secret:SERVE_TEST_SECRET]"
        execution_id = data["execution_id"]
        answers = [
            api.get(f"/api/v1/executions/{execution_id}"),
            api.get(f"/api/v1/executions/{execution_id}/calls"),
            api.get(f"/api/v1/executions/{execution_id}/records"),
            api.get(f"/api/v1/executions/{execution_id}/records/stream"),
            api.post(f"/api/v1/executions/{execution_id}/replay", params={"calls": True}),
            api.get(f"/workflows/uses_secret/status/{execution_id}", params={"detailed": True}),
            api.get("/api/v1/executions"),
            api.get("/openapi.json"),
            api.get("/"),
            api.get("/api/v1/executions/nope"),
            httpx.get(guarded.url + "/api/v1/executions", headers={"Authorization": f"Bearer {TOKEN}-wrong"}),
        ]
    for response in answers:
        text = response.text + json.dumps(dict(response.headers))
        assert TOKEN not in text, response.request.url
        assert SECRET not in text, response.request.url
    assert "[secret:SERVE_TEST_SECRET]" in answers[2].text


def test_a_request_for_another_host_is_refused(guarded: Server) -> None:
    with guarded.client() as api:
        assert api.get("/api/v1/executions", headers={"Host": "localhost"}).status_code == 200
        refused = api.get("/api/v1/executions", headers={"Host": f"rebound.example:{guarded.port}"})
        assert refused.status_code == 421 and refused.json()["error"] == "MisdirectedRequest"


def test_changes_from_another_site_are_refused(guarded: Server) -> None:
    with guarded.client() as api:
        path = "/api/v1/workflows/greet/executions"
        assert api.post(path, headers={"Origin": "https://elsewhere.example"}).json()["error"] == "CrossSiteRequest"
        assert api.post(path, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert api.post(path, headers={"Origin": "null"}).status_code == 403
        assert (
            api.post(
                path, headers={"Origin": guarded.url, "Sec-Fetch-Site": "same-origin"}, params={"wait": 5}
            ).status_code
            == 201
        )
        assert api.get("/api/v1/executions", headers={"Origin": "https://elsewhere.example"}).status_code == 200


def _serve(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "FLUX_SERVE_TOKEN"}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "flux", "serve", *args],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_token_file_must_be_private(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    refused = _serve(
        [str(WORKFLOWS), "--store", str(tmp_path / "s"), "--token-file", str(token_file), "--port", str(free_port())],
        tmp_path,
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("InvalidOptionError: --token-file") and "chmod 600" in lines[0]
    assert TOKEN not in refused.stderr + refused.stdout
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    assert "the file is empty" in _serve(["--token-file", str(empty)], tmp_path).stderr
    blank = _serve(["--store", str(tmp_path / "s")], tmp_path, env={"FLUX_SERVE_TOKEN": "  "})
    assert blank.returncode == 2 and "FLUX_SERVE_TOKEN is set but empty" in blank.stderr


def test_a_private_token_file_protects_the_server(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    running = Server(str(tmp_path / "s"), tmp_path, args=("--token-file", str(token_file)))
    try:
        assert httpx.get(running.url + "/api/v1/workflows").status_code == 401
        assert (
            httpx.get(running.url + "/api/v1/workflows", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 200
        )
        assert TOKEN not in running.log.read_text()
    finally:
        running.stop()


def test_stream_needs_the_token_too(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as anonymous:
        with anonymous.stream("GET", "/api/v1/executions/any/records/stream") as response:
            assert response.status_code == 401
    with guarded.client() as api:
        data = start(api, "greet", 1, wait=10)
        with api.stream("GET", f"/api/v1/executions/{data['execution_id']}/records/stream") as response:
            events = [e for e in sse_events(response.iter_lines()) if "event" in e]
    assert events[-1]["event"] == "end" and len(events) == data["records"] + 1
