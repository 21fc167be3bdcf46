"""Python client for Gantry, the GPU workload scheduler: submit, watch, explain and cancel workloads
on `gantry serve` over its HTTP API (standard library only).

    from gantry_client import Client, from_description

    client = Client("http://127.0.0.1:8080", token="...")
    spec = from_description("fine-tune a 7 billion parameter model on 2 GPUs")
    spec["run"] = {"command": ["python", "train.py"]}
    w = client.submit(spec)
    print(client.wait(w.id).state, client.logs(w.id))
"""

from .client import Client, Spec
from .errors import GantryError, WaitTimeout
from .models import (
    FINISHED_STATES,
    ErrorDetail,
    EstimatedStart,
    ExplainReason,
    Explanation,
    LogChunk,
    NodeScore,
    Placement,
    QueuePosition,
    Status,
    Workload,
    WorkloadPage,
)
from .template import KINDS, Template, from_description, template

__version__ = "0.1.0"

__all__ = [
    "FINISHED_STATES",
    "KINDS",
    "Client",
    "ErrorDetail",
    "EstimatedStart",
    "ExplainReason",
    "Explanation",
    "GantryError",
    "LogChunk",
    "NodeScore",
    "Placement",
    "QueuePosition",
    "Spec",
    "Status",
    "Template",
    "WaitTimeout",
    "Workload",
    "WorkloadPage",
    "from_description",
    "template",
]
