"""Fixtures: one real `gantry serve` with auth on (tokens of every role) and one with `--no-auth`,
shared by the tests of a session."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import GantryServer  # noqa: E402

from gantry_client import Client  # noqa: E402


@pytest.fixture(scope="session")
def server() -> Iterator[GantryServer]:
    """`gantry serve` with bearer tokens required."""
    with GantryServer(auth=True) as s:
        yield s


@pytest.fixture(scope="session")
def tokens(server: GantryServer) -> Dict[str, str]:
    """A token per role: admin, operator, submitter (alice and bob), viewer."""
    return {
        "admin": server.token("admin", "admin"),
        "alice": server.token("alice", "submitter"),
        "bob": server.token("bob", "submitter"),
        "viewer": server.token("viewer", "viewer"),
    }


@pytest.fixture(scope="session")
def client(server: GantryServer, tokens: Dict[str, str]) -> Client:
    """A client with the admin token."""
    return Client(server.url, token=tokens["admin"], timeout=20)


@pytest.fixture(scope="session")
def open_server() -> Iterator[GantryServer]:
    """`gantry serve --no-auth`."""
    with GantryServer(auth=False) as s:
        yield s
