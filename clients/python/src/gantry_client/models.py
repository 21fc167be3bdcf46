"""Typed views of the API's responses, decoded from its camelCase JSON.

Each dataclass field is a JSON property of the same name in camelCase (`exit_code` <- `exitCode`),
unless its metadata names another (`json_name`). Unknown properties are ignored (a newer server may
add some); every object keeps its JSON as `raw`. `tests/test_openapi.py` checks each field against
the live server's `/openapi.json`, so a renamed or removed property fails the tests.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

if sys.version_info >= (3, 10):  # pragma: no cover - depends on the interpreter
    from types import UnionType

    _UNION_TYPES: Tuple[Any, ...] = (Union, UnionType)
else:  # pragma: no cover
    _UNION_TYPES = (Union,)

T = TypeVar("T")

#: States after which nothing more happens to a workload by itself (failed and lost ones may still
#: be retried: see `is_final`).
FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled", "preempted", "lost"})


def json_name(field: "dataclasses.Field[Any]") -> str:
    """The JSON property a dataclass field is read from."""
    explicit = field.metadata.get("json_name")
    if explicit:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in _UNION_TYPES:
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin in (list, List):
        (item,) = get_args(tp) or (Any,)
        return [_decode(item, v) for v in value] if isinstance(value, list) else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decode(tp, value)
    return value


def decode(cls: Type[T], data: Any) -> T:
    """Builds dataclass `cls` from a JSON object (missing properties become None or empty)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "raw":
            kwargs["raw"] = data
            continue
        value = data.get(json_name(f))
        if value is None and get_origin(hints[f.name]) in (list, List):
            value = []
        kwargs[f.name] = _decode(hints[f.name], value)
    return cls(**kwargs)


def _raw() -> Any:
    return dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A workload as the API shows it (`WorkloadView`)."""

    id: str
    name: str
    owner: str
    queue: str
    priority: int
    state: str
    attempts: int
    exit_code: Optional[int]
    reason: Optional[str]
    gpus: List[str]
    submitted_at: int
    started_at: Optional[int]
    finished_at: Optional[int]
    spec: Dict[str, Any]
    raw: Dict[str, Any] = _raw()

    @property
    def is_final(self) -> bool:
        """Whether nothing more will happen to it: succeeded or cancelled; failed or lost with no
        retry coming (every allowed attempt used, or it could not start); preempted."""
        if self.state in ("succeeded", "cancelled", "preempted"):
            return True
        if self.state in ("failed", "lost"):
            retries = self.spec.get("retries", 0) if isinstance(self.spec, dict) else 0
            could_not_start = (self.reason or "").startswith("could not start")
            return could_not_start or self.attempts > int(retries or 0)
        return False


@dataclasses.dataclass(frozen=True)
class Status:
    """A workload with its audit events, oldest first (`StatusView`)."""

    workload: Workload
    events: List[Dict[str, Any]]
    raw: Dict[str, Any] = _raw()

    @property
    def state(self) -> str:
        """The workload's state."""
        return self.workload.state


@dataclasses.dataclass(frozen=True)
class WorkloadPage:
    """A page of workloads; `next` is the cursor for the following page (`WorkloadPage`)."""

    items: List[Workload]
    next: Optional[str]
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class LogChunk:
    """A slice of a log: its text, where to continue (`X-Next-Offset`) and the workload's state
    when it was read (`X-Workload-State`)."""

    text: str
    next_offset: int
    state: str


@dataclasses.dataclass(frozen=True)
class ExplainReason:
    """One reason a workload waits: the stage, the filter, how many nodes it rejected, why."""

    stage: str
    filter: Optional[str]
    nodes: int
    reason: str
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class QueuePosition:
    """Where a waiting workload stands: in its queue and overall."""

    queue: int
    overall: int
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class EstimatedStart:
    """When a waiting workload should start; `confidence` is `exact`, `estimate` or `unknown`."""

    at_ms: Optional[int]
    in_seconds: Optional[int]
    confidence: str
    basis: str
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class NodeScore:
    """A node's placement score."""

    node: str
    score: float
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a running or finished workload went, when, and the best-scoring nodes."""

    node: str
    gpus: List[str]
    started_at_ms: Optional[int]
    top_scores: List[NodeScore]
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why a workload waits (or where it runs): `GET /api/workloads/{id}/explain`. `summary` is the
    text `gantry explain` prints."""

    id: str
    state: str
    stage: str
    summary: str
    reasons: List[ExplainReason]
    position: Optional[QueuePosition]
    estimated_start: Optional[EstimatedStart]
    placement: Optional[Placement]
    raw: Dict[str, Any] = _raw()


@dataclasses.dataclass(frozen=True)
class ErrorDetail:
    """The `error` object of an error response (`ErrorBody.error`)."""

    code: str
    message: str
    field: Optional[str]
    raw: Dict[str, Any] = _raw()


__all__ = [
    "FINISHED_STATES",
    "ErrorDetail",
    "EstimatedStart",
    "ExplainReason",
    "Explanation",
    "LogChunk",
    "NodeScore",
    "Placement",
    "QueuePosition",
    "Status",
    "Workload",
    "WorkloadPage",
    "decode",
    "json_name",
]
