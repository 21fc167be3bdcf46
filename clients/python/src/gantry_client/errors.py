"""Errors the client raises."""

from __future__ import annotations

import json
from typing import Any, Optional


class GantryError(Exception):
    """A request that failed: the API's JSON error body (`{"error": {"code", "message", "field"}}`).

    `status` is the HTTP status (None when no answer came: connection refused, timeout), `code` the
    stable machine-readable code (`invalid_field`, `not_found`, `unauthorized`, ...), `field` the
    offending field's path (`resources.gpu.share`) when one field is to blame.
    """

    def __init__(
        self,
        status: Optional[int],
        code: str,
        message: str,
        field: Optional[str] = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        prefix = f"{status} " if status is not None else ""
        super().__init__(f"{prefix}{code}: {message}{where}")

    @classmethod
    def from_response(cls, status: int, body: bytes) -> "GantryError":
        """The error of a response's status and body (any body: a proxy's HTML page too)."""
        text = body.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        detail = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            field = detail.get("field")
            return cls(
                status,
                detail["code"],
                str(detail.get("message", "")),
                field if isinstance(field, str) else None,
            )
        return cls(status, f"http_{status}", text.strip()[:500] or f"HTTP {status}")


class WaitTimeout(GantryError, TimeoutError):
    """`Client.wait` gave up before the workload reached a final state; `last`: what it saw last."""

    def __init__(self, workload_id: str, timeout: float, last: Any) -> None:
        state = getattr(last, "state", "?")
        super().__init__(
            None,
            "wait_timeout",
            f"workload {workload_id} still {state} after {timeout:g} s",
        )
        self.last = last
