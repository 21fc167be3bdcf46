"""The client against the real `gantry serve` (simulated GPUs, real child processes, real SQLite)."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator, List

import pytest
from harness import GantryServer

from gantry_client import Client, GantryError, Status, WaitTimeout, Workload


def sh(name: str, script: str, gpus: int = 0, **extra: Any) -> Dict[str, Any]:
    """A spec running `sh -c SCRIPT` on `gpus` whole GPUs (0: none)."""
    spec: Dict[str, Any] = {"name": name, "run": {"command": ["sh", "-c", script]}}
    if gpus:
        spec["resources"] = {"gpu": {"count": gpus}}
    spec.update(extra)
    return spec


@pytest.fixture
def a100s_held(client: Client) -> Iterator[Workload]:
    """Both A100s held by a minute-long sleep, so later A100 work waits; cancelled afterwards."""
    blocker = client.submit(
        {
            "name": "hold-a100",
            "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
            "run": {"command": ["sleep", "60"]},
        }
    )
    deadline = time.monotonic() + 15
    while client.status(blocker.id).state != "running":
        assert time.monotonic() < deadline, "the blocker never started"
        time.sleep(0.05)
    yield blocker
    if not client.status(blocker.id).workload.is_final:
        client.cancel(blocker.id)
    client.wait(blocker.id, timeout=15, poll=0.05)


def test_submit_wait_succeeds_with_its_log(client: Client) -> None:
    w = client.submit(sh("py-hello", "echo hello from python; echo to-stderr >&2", gpus=1))
    assert w.state == "pending" and w.id.startswith("wl-")
    assert w.owner == "admin" and w.queue == "default"
    assert w.spec["name"] == "py-hello"

    final = client.wait(w.id, timeout=30, poll=0.05)
    assert isinstance(final, Status)
    assert final.state == "succeeded", final
    assert final.workload.exit_code == 0
    assert final.workload.attempts == 1
    assert len(final.workload.gpus) == 1 and ":GPU-" in final.workload.gpus[0]
    assert final.workload.started_at is not None and final.workload.finished_at is not None
    assert final.workload.finished_at >= final.workload.started_at >= final.workload.submitted_at
    assert [e["toState"] for e in final.events] == ["pending", "scheduled", "running", "succeeded"]

    assert client.logs(w.id) == "hello from python\n"
    assert client.logs(w.id, stream="stderr") == "to-stderr\n"
    chunk = client.log_chunk(w.id, offset=6)
    assert (chunk.text, chunk.next_offset, chunk.state) == ("from python\n", 18, "succeeded")


def test_yaml_and_json_text_are_submitted_as_such(client: Client) -> None:
    yaml = "name: py-yaml\nrun:\n  command: [sh, -c, 'echo yaml']\n"
    w = client.submit(yaml)
    assert w.spec["run"]["command"] == ["sh", "-c", "echo yaml"]
    j = client.submit(json.dumps(sh("py-json-text", "echo json")))
    assert j.name == "py-json-text"
    for id in (w.id, j.id):
        assert client.wait(id, timeout=30, poll=0.05).state == "succeeded"
    assert client.logs(w.id) == "yaml\n"
    assert client.logs(j.id) == "json\n"


def test_a_failing_command_ends_failed_with_its_exit_code(client: Client) -> None:
    w = client.submit(sh("py-fails", "echo oops >&2; exit 3"))
    final = client.wait(w.id, timeout=30, poll=0.05)
    assert final.state == "failed"
    assert final.workload.exit_code == 3
    assert final.workload.reason == "exit 3"
    assert client.logs(w.id, stream="stderr") == "oops\n"


def test_wait_does_not_stop_at_a_failure_that_will_be_retried(client: Client, server: GantryServer) -> None:
    counter = server.work / "py-retry-count"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        "echo attempt $n; [ $n -ge 2 ]"
    )
    w = client.submit(sh("py-flaky", script, retries=1))
    final = client.wait(w.id, timeout=30, poll=0.05)
    assert final.state == "succeeded", final
    assert final.workload.attempts == 2
    assert "failed" in [e["toState"] for e in final.events]
    assert client.logs(w.id) == "attempt 2\n"
    assert client.logs(w.id, attempt=1) == "attempt 1\n"


def test_follow_streams_the_log_until_the_end(client: Client) -> None:
    w = client.submit(sh("py-follow", "for i in 1 2 3; do echo line $i; sleep 0.3; done"))
    pieces: List[str] = list(client.logs(w.id, follow=True, poll=0.05))
    assert "".join(pieces) == "line 1\nline 2\nline 3\n"
    assert len(pieces) >= 2, "the log came in one piece: it was not followed while written"
    assert client.status(w.id).state == "succeeded"


def test_cancel_a_running_and_a_waiting_workload(client: Client, a100s_held: Workload) -> None:
    # Running: SIGTERM now, cancelled once the process has gone.
    running = client.cancel(a100s_held.id)
    assert running.state == "running"
    final = client.wait(a100s_held.id, timeout=15, poll=0.05)
    assert final.state == "cancelled"
    assert final.events[-1]["fromState"] == "running"

    # Waiting: cancelled at once.
    blocker = client.submit(
        {
            "name": "hold-again",
            "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
            "run": {"command": ["sleep", "60"]},
        }
    )
    try:
        deadline = time.monotonic() + 15
        while client.status(blocker.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        waiting = client.submit(
            {
                "name": "py-waits",
                "resources": {"gpu": {"count": 1, "models": ["A100-40GB"]}},
                "run": {"command": ["true"]},
            }
        )
        assert client.status(waiting.id).state == "pending"
        done = client.cancel(waiting.id)
        assert done.state == "cancelled"
        assert done.reason == "cancelled by admin"
        with pytest.raises(GantryError) as e:
            client.cancel(waiting.id)
        assert (e.value.status, e.value.code) == (409, "conflict")
    finally:
        client.cancel(blocker.id)
        client.wait(blocker.id, timeout=15, poll=0.05)


def test_wait_gives_up_after_its_timeout(client: Client) -> None:
    w = client.submit(sh("py-slow", "sleep 30"))
    try:
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as e:
            client.wait(w.id, timeout=0.5, poll=0.1)
        assert time.monotonic() - started < 3
        assert e.value.last.state in ("pending", "scheduled", "running")
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, GantryError)
    finally:
        client.cancel(w.id)
        assert client.wait(w.id, timeout=15, poll=0.05).state == "cancelled"


def test_a_bad_spec_raises_with_the_field(client: Client) -> None:
    bad = sh("py-bad", "true")
    bad["resources"] = {"gpu": {"share": 1500}}
    with pytest.raises(GantryError) as e:
        client.submit(bad)
    assert (e.value.status, e.value.code, e.value.field) == (
        400,
        "invalid_field",
        "resources.gpu.share",
    )
    assert e.value.message
    # An unknown field in YAML is named with its path.
    with pytest.raises(GantryError) as e:
        client.submit("name: py-typo\nresources:\n  gpus: 1\nrun:\n  command: [true]\n")
    assert (e.value.status, e.value.field) == (400, "resources.gpus")
    # Malformed JSON text: the body as a whole.
    with pytest.raises(GantryError) as e:
        client.submit('{"name": ')
    assert (e.value.status, e.value.code, e.value.field) == (400, "malformed_body", None)
    with pytest.raises(TypeError):
        client.submit(42)  # type: ignore[arg-type]


def test_unknown_and_malformed_ids(client: Client) -> None:
    with pytest.raises(GantryError) as e:
        client.status("wl-99999999")
    assert (e.value.status, e.value.code) == (404, "not_found")
    with pytest.raises(GantryError) as e:
        client.status("nope")
    assert (e.value.status, e.value.code, e.value.field) == (400, "invalid_field", "id")
    # Path segments are escaped: a slash cannot reach another route.
    with pytest.raises(GantryError) as e:
        client.cancel("wl-1/../../strategy")
    assert e.value.status == 400


def test_idempotency_key_returns_the_first_submission(client: Client) -> None:
    spec = sh("py-once", "true")
    first = client.submit(spec, idempotency_key="py-key-1")
    again = client.submit(spec, idempotency_key="py-key-1")
    assert again.id == first.id
    other = client.submit(spec, idempotency_key="py-key-2")
    assert other.id != first.id
    with pytest.raises(GantryError) as e:
        client.submit(sh("py-different", "true"), idempotency_key="py-key-1")
    assert (e.value.status, e.value.code, e.value.field) == (
        409,
        "idempotency_mismatch",
        "Idempotency-Key",
    )


def test_auth_and_roles(server: GantryServer, tokens: Dict[str, str]) -> None:
    with pytest.raises(GantryError) as e:
        Client(server.url).workloads()
    assert (e.value.status, e.value.code) == (401, "unauthorized")
    with pytest.raises(GantryError) as e:
        Client(server.url, token="not-a-token").submit(sh("x", "true"))
    assert (e.value.status, e.value.code) == (401, "unauthorized")

    viewer = Client(server.url, token=tokens["viewer"])
    with pytest.raises(GantryError) as e:
        viewer.submit(sh("py-viewer", "true"))
    assert (e.value.status, e.value.code) == (403, "forbidden")

    alice = Client(server.url, token=tokens["alice"])
    bob = Client(server.url, token=tokens["bob"])
    mine = alice.submit(sh("py-alice", "true"))
    assert mine.owner == "alice"
    assert viewer.status(mine.id).workload.owner == "alice"
    # Another submitter's workload does not exist for bob.
    with pytest.raises(GantryError) as e:
        bob.status(mine.id)
    assert e.value.status == 404
    assert all(w.owner == "bob" for w in bob.iter_workloads())
    assert mine.id in [w.id for w in alice.iter_workloads()]


def test_listing_filters_and_pages(client: Client) -> None:
    ids = [client.submit(sh(f"py-list-{i}", "true", queue="pylist")).id for i in range(3)]
    for id in ids:
        client.wait(id, timeout=30, poll=0.05)
    page = client.workloads(queue="pylist", limit=2, order="oldest")
    assert [w.id for w in page.items] == ids[:2]
    assert page.next is not None
    rest = client.workloads(queue="pylist", limit=2, order="oldest", after=page.next)
    assert [w.id for w in rest.items] == ids[2:]
    assert [w.id for w in client.iter_workloads(queue="pylist", page_size=1)] == ids[::-1]
    assert all(w.state == "succeeded" for w in client.iter_workloads(state="succeeded"))
    with pytest.raises(GantryError) as e:
        client.workloads(state="sleeping")
    assert (e.value.status, e.value.field) == (400, "state")


def test_no_auth_server_needs_no_token(open_server: GantryServer) -> None:
    c = Client(open_server.url)
    w = c.submit(sh("py-open", "echo open"))
    assert w.owner == "local"
    assert c.wait(w.id, timeout=30, poll=0.05).state == "succeeded"
    assert c.logs(w.id) == "open\n"


def test_from_env_and_an_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("GANTRY_TOKEN", "secret")
    c = Client.from_env(timeout=2)
    assert (c.base_url, c.token) == ("http://127.0.0.1:9", "secret")
    assert "secret" not in repr(c)
    with pytest.raises(GantryError) as e:
        c.status("wl-1")
    assert (e.value.status, e.value.code) == (None, "unreachable")
    with pytest.raises(ValueError):
        Client("127.0.0.1:8080")


def _route_missing(e: GantryError) -> bool:
    return e.status == 404 and "no such route" in e.message


def test_explain_a_waiting_and_a_running_workload(client: Client, a100s_held: Workload) -> None:
    waiting = client.submit(
        {
            "name": "py-explain",
            "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
            "run": {"command": ["true"]},
        }
    )
    try:
        try:
            why = client.explain(waiting.id)
        except GantryError as e:
            if _route_missing(e):
                pytest.skip("GET /api/workloads/{id}/explain is not served by this build (404)")
            raise
        assert why.id == waiting.id
        assert why.state == "pending"
        assert why.summary.strip(), why
        assert why.reasons, why
        assert all(r.reason for r in why.reasons)
        assert why.position is not None
        assert why.placement is None

        running = client.explain(a100s_held.id)
        assert running.state == "running"
        assert running.placement is not None and running.placement.node
        assert running.summary.strip()
    finally:
        client.cancel(waiting.id)
    with pytest.raises(GantryError) as missing:
        client.explain("wl-99999999")
    assert missing.value.status == 404
