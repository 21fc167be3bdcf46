"""A blocking client for `gantry serve`'s HTTP API, on the standard library only."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Union,
    overload,
)

from .errors import GantryError, WaitTimeout
from .models import (
    Explanation,
    LogChunk,
    Status,
    Workload,
    WorkloadPage,
    decode,
)

#: A workload spec: a dict (as `gantry schema workload` describes), or YAML or JSON text.
Spec = Union[Mapping[str, Any], str]

#: The routes this client calls: (method, OpenAPI path). `tests/test_openapi.py` checks each against
#: the server's `/openapi.json`.
ROUTES: Dict[str, Tuple[str, str]] = {
    "submit": ("POST", "/api/workloads"),
    "workloads": ("GET", "/api/workloads"),
    "status": ("GET", "/api/workloads/{id}/status"),
    "logs": ("GET", "/api/workloads/{id}/logs"),
    "cancel": ("POST", "/api/workloads/{id}/cancel"),
    "explain": ("GET", "/api/workloads/{id}/explain"),
}

#: Query parameters the client sends, per route name.
QUERY_PARAMETERS: Dict[str, Tuple[str, ...]] = {
    "workloads": ("state", "queue", "owner", "limit", "after", "order"),
    "logs": ("stream", "attempt", "offset", "max"),
}

#: Request headers the client sends beyond Authorization and Content-Type, per route name.
REQUEST_HEADERS: Dict[str, Tuple[str, ...]] = {"submit": ("Idempotency-Key",)}

#: Response headers the client reads, per route name.
RESPONSE_HEADERS: Dict[str, Tuple[str, ...]] = {"logs": ("X-Next-Offset", "X-Workload-State")}


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


class _Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise GantryError(self.status, "bad_response", f"the server's answer is not JSON: {e}") from e


class Client:
    """A client for one Gantry server.

    `base_url` is the server (`http://127.0.0.1:8080`); `token` a bearer token from
    `gantry token create` (None with `gantry serve --no-auth`); `timeout` the seconds one request
    may take. Every failed request raises `GantryError` with the API's status, code, field and message.
    """

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls, timeout: float = 30.0) -> "Client":
        """A client for `$GANTRY_SERVER` (default `http://127.0.0.1:8080`) with `$GANTRY_TOKEN`, as
        the `gantry` CLI reads them."""
        return cls(
            os.environ.get("GANTRY_SERVER", "http://127.0.0.1:8080"),
            os.environ.get("GANTRY_TOKEN") or None,
            timeout,
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, token={'***' if self.token else None})"

    # -- transport --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> _Response:
        url = self.base_url + path
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("Accept", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as e:
            data = e.read() if e.fp is not None else b""
            raise GantryError.from_response(e.code, data) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            raise GantryError(None, "unreachable", f"{method} {url}: no answer: {reason}") from e

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # -- the API ----------------------------------------------------------------------------

    def submit(self, spec: Spec, idempotency_key: Optional[str] = None) -> Workload:
        """Submits a workload; returns it as stored (state `pending`), once it is durable.

        `spec` is a dict, or YAML or JSON text. With `idempotency_key`, submitting again with the
        same key and spec returns the first workload instead of a second one (a different spec
        with the same key raises `GantryError` 409 `idempotency_mismatch`)."""
        if isinstance(spec, str):
            body = spec.encode("utf-8")
            is_json = spec.lstrip().startswith("{")
            content_type = "application/json" if is_json else "application/yaml"
        elif isinstance(spec, Mapping):
            body = json.dumps(dict(spec)).encode("utf-8")
            content_type = "application/json"
        else:
            raise TypeError(f"spec must be a dict or YAML/JSON text, not {type(spec).__name__}")
        headers = {"Content-Type": content_type}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return decode(Workload, self._json("POST", "/api/workloads", body=body, headers=headers))

    def status(self, id: str) -> Status:
        """A workload with its audit events."""
        return decode(Status, self._json("GET", f"/api/workloads/{_quote(id)}/status"))

    def wait(
        self,
        id: str,
        timeout: Optional[float] = None,
        poll: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Status:
        """Polls every `poll` seconds until the workload is final (see `Workload.is_final`: a
        failure that will be retried is not); returns its last status. Raises `WaitTimeout` after
        `timeout` seconds (None: no limit)."""
        if poll <= 0:
            raise ValueError("poll must be positive")
        end = None if timeout is None else clock() + timeout
        while True:
            st = self.status(id)
            if st.workload.is_final:
                return st
            if end is not None:
                left = end - clock()
                if left <= 0:
                    raise WaitTimeout(id, float(timeout or 0), st.workload)
                sleep(min(poll, left))
            else:
                sleep(poll)

    def log_chunk(
        self,
        id: str,
        offset: int = 0,
        stream: str = "stdout",
        attempt: Optional[int] = None,
        max_bytes: Optional[int] = None,
    ) -> LogChunk:
        """One slice of a log from byte `offset` (at most 1 MiB, or `max_bytes`)."""
        resp = self._request(
            "GET",
            f"/api/workloads/{_quote(id)}/logs",
            query={"stream": stream, "attempt": attempt, "offset": offset, "max": max_bytes},
        )
        headers = {k.lower(): v for k, v in resp.headers.items()}
        text = resp.body.decode("utf-8", errors="replace")
        try:
            next_offset = int(headers.get("x-next-offset", ""))
        except ValueError:
            next_offset = offset + len(resp.body)
        return LogChunk(text, next_offset, headers.get("x-workload-state", ""))

    @overload
    def logs(
        self,
        id: str,
        follow: Literal[False] = ...,
        stream: str = ...,
        attempt: Optional[int] = ...,
        poll: float = ...,
    ) -> str: ...

    @overload
    def logs(
        self,
        id: str,
        follow: Literal[True],
        stream: str = ...,
        attempt: Optional[int] = ...,
        poll: float = ...,
    ) -> Iterator[str]: ...

    def logs(
        self,
        id: str,
        follow: bool = False,
        stream: str = "stdout",
        attempt: Optional[int] = None,
        poll: float = 0.5,
    ) -> Union[str, Iterator[str]]:
        """A workload's log (`stdout` or `stderr`; the latest attempt unless `attempt`).

        Without `follow`: the whole log as text. With `follow`: an iterator of new text as it is
        written, ending once the workload has finished and everything is read (as `gantry logs -f`);
        it waits for the workload to start first."""
        if follow:
            return self._follow(id, stream, attempt, poll)
        parts = []
        offset = 0
        while True:
            chunk = self.log_chunk(id, offset, stream, attempt)
            parts.append(chunk.text)
            if not chunk.text or chunk.next_offset <= offset:
                return "".join(parts)
            offset = chunk.next_offset

    def _follow(self, id: str, stream: str, attempt: Optional[int], poll: float) -> Iterator[str]:
        while True:
            w = self.status(id).workload
            if w.attempts > 0 or w.state not in ("pending", "admitted", "scheduled"):
                break
            time.sleep(poll)
        offset = 0
        while True:
            chunk = self.log_chunk(id, offset, stream, attempt)
            offset = chunk.next_offset
            if chunk.text:
                yield chunk.text
                continue
            if chunk.state in ("succeeded", "failed", "cancelled", "preempted", "lost"):
                return
            time.sleep(poll)

    def cancel(self, id: str) -> Workload:
        """Cancels a workload: a waiting one at once (state `cancelled`); a running one is stopped
        (SIGTERM, then SIGKILL after the server's grace) and the returned view is still `running`:
        `wait` for `cancelled`."""
        return decode(Workload, self._json("POST", f"/api/workloads/{_quote(id)}/cancel"))

    def explain(self, id: str) -> Explanation:
        """Why a workload waits (stage, filters, queue position, estimated start) or where and why
        it runs; `summary` is the text `gantry explain` prints."""
        return decode(Explanation, self._json("GET", f"/api/workloads/{_quote(id)}/explain"))

    def workloads(
        self,
        state: Optional[str] = None,
        queue: Optional[str] = None,
        owner: Optional[str] = None,
        limit: Optional[int] = None,
        after: Optional[str] = None,
        order: Optional[str] = None,
    ) -> WorkloadPage:
        """One page of workloads (newest first unless `order="oldest"`), filtered by state, queue
        and owner; pass the page's `next` as `after` for the following one."""
        query = {
            "state": state,
            "queue": queue,
            "owner": owner,
            "limit": limit,
            "after": after,
            "order": order,
        }
        return decode(WorkloadPage, self._json("GET", "/api/workloads", query=query))

    def iter_workloads(
        self,
        state: Optional[str] = None,
        queue: Optional[str] = None,
        owner: Optional[str] = None,
        order: Optional[str] = None,
        page_size: int = 100,
    ) -> Iterator[Workload]:
        """Every matching workload, following the pages' cursors."""
        after: Optional[str] = None
        while True:
            page = self.workloads(state, queue, owner, page_size, after, order)
            yield from page.items
            if page.next is None:
                return
            after = page.next
