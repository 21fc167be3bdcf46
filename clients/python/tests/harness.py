"""The real `gantry serve` for the tests and the API fuzzing: a child process on a free loopback port
with a temporary database, simulated GPUs and its own log directory.

`GANTRY_BIN` names the binary (default: `target/debug/gantry` of this repository). Stopping a server
also kills the process groups of the workloads it started (found by their pid records), so a failing
test leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

#: The repository root (clients/python/tests/harness.py -> ../../..).
REPO = Path(__file__).resolve().parents[3]

#: Simulated GPUs of every test server: two H100 80GB and two A100 40GB.
GPUS = "2xH100-80GB,2xA100-40GB"


def gantry_binary() -> Path:
    """The `gantry` binary under test."""
    return Path(os.environ.get("GANTRY_BIN", REPO / "target" / "debug" / "gantry"))


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GantryServer:
    """A running `gantry serve` (auth on unless `auth=False`) in its own temporary directory."""

    def __init__(
        self,
        auth: bool = True,
        extra: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.auth = auth
        self.extra = list(extra)
        self.env = env
        self.dir = Path(tempfile.mkdtemp(prefix="gantry-py-"))
        # Workloads run as nobody when the tests run as root: they must reach `work/`.
        os.chmod(self.dir, 0o755)
        self.work = self.dir / "work"
        self.work.mkdir()
        os.chmod(self.work, 0o777)
        self.db = self.dir / "g.db"
        self.logs = self.dir / "logs"
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """The server's output so far."""
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 20.0) -> "GantryServer":
        """Starts the server and waits until `/readyz` answers 200."""
        binary = gantry_binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} not found: run `cargo build -p gantry` first")
        self.port = free_port()
        args = [
            str(binary),
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--db",
            str(self.db),
            "--log-dir",
            str(self.logs),
            "--simulate-gpus",
            GPUS,
            "--grace",
            "1",
            # Room for the templates' host demands (a 7B fine-tune asks 252 GiB).
            "--cpus",
            "512",
            "--memory-gib",
            "4096",
            *self.extra,
        ]
        if not self.auth:
            args.append("--no-auth")
        env = dict(os.environ, GANTRY_LOG="warn")
        env.update(self.env or {})
        log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        end = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"gantry serve exited with {code}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"gantry serve not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def token(self, name: str, role: str) -> str:
        """Creates a token with `gantry token create` on this server's database; returns its secret."""
        out = subprocess.run(
            [
                str(gantry_binary()),
                "token",
                "create",
                "--name",
                name,
                "--role",
                role,
                "--db",
                str(self.db),
            ],
            capture_output=True,
            check=True,
        )
        return out.stdout.decode().strip()

    def openapi(self, token: Optional[str] = None) -> Dict[str, Any]:
        """The server's `/openapi.json`."""
        req = urllib.request.Request(f"{self.url}/openapi.json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            doc: Dict[str, Any] = json.loads(r.read())
            return doc

    def stop(self) -> None:
        """Stops the server and every workload process group it left, then removes its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        for pgid in self._workload_groups():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def _workload_groups(self) -> List[int]:
        """Process groups of recorded attempts whose leader is still the process recorded."""
        groups = []
        for record in self.logs.glob("*/*.pid"):
            try:
                fields = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
                pgid, ticks = int(fields["pgid"]), int(fields["start_ticks"])
                stat = Path(f"/proc/{pgid}/stat").read_text()
            except (OSError, KeyError, ValueError):
                continue
            rest = stat[stat.rfind(")") + 1 :].split()
            # Fields after the name: state is the 1st, start time the 20th.
            if pgid > 1 and len(rest) > 19 and rest[0] != "Z" and int(rest[19]) == ticks:
                groups.append(pgid)
        return groups

    def __enter__(self) -> "GantryServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
