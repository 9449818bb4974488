"""A real two-node Ray cluster on this machine: a head and a worker node, each `ray start`ed.

Both nodes get ``--num-cpus=1`` (the test machine has two cores), no dashboard and no usage
stats, a temp folder of the test's own, and a marker in their environment. ``stop`` ends what
this cluster started and nothing else: the processes carrying the marker or one of its node
ids, and the process groups of its ``ray start`` commands, by pid (``ray stop`` would stop
every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MARK = "ORCHESTRATOR_NB_TEST_RAY_CLUSTER"
RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    temp: Path
    port: int
    client_port: int
    mark: str = field(default_factory=lambda: secrets.token_hex(6))
    groups: list[int] = field(default_factory=list)
    node_ids: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env |= {
            MARK: self.mark,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(self.temp),
            # Ray itself kills a dead worker's direct children; off here, so the tests see
            # that the batch's own reaping leaves no agent behind (on a cluster, both apply).
            "RAY_kill_child_processes_on_worker_exit": "false",
        }
        return env

    def start(self, deadline_s: float = 240.0) -> None:
        """Start the head, wait until its GCS answers, then the worker; each within a deadline."""
        common = [
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--disable-usage-stats",
            f"--temp-dir={self.temp}",
        ]
        head = [
            str(RAY),
            "start",
            "--head",
            f"--port={self.port}",
            f"--ray-client-server-port={self.client_port}",
            "--include-dashboard=false",
            *common,
        ]
        worker = [str(RAY), "start", f"--address={self.address}", *common]
        deadline = time.monotonic() + deadline_s
        self._run(head, deadline)
        # `ray start --head` returns once the head is up; its GCS must also take connections
        # before a worker can join (a loaded machine is slow here, so poll, never a fixed sleep).
        while not _accepts(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the head's GCS on port {self.port} never answered")
            time.sleep(0.1)
        self._run(worker, deadline)

    def _run(self, argv: list[str], deadline: float) -> None:
        log = self.temp / "start.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, env=self.env(), stdout=out, stderr=out, start_new_session=True
            )
            self.groups.append(proc.pid)
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"`{' '.join(argv[1:3])}` failed ({code}):\n{tail}")

    def processes(self) -> list[int]:
        """Live processes this cluster started."""
        found = []
        marks = [f"{MARK}={self.mark}".encode()] + [
            f"RAY_NODE_ID={n}".encode() for n in self.node_ids
        ]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] == "Z":
                continue
            if int(fields[2]) in self.groups or any(m in environ for m in marks):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self.processes()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.processes():
                return


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def new_cluster() -> Cluster:
    # Inside the test run's temp folder when its path is short: Ray's socket paths, made under
    # this folder, must fit in 107 bytes.
    base = tempfile.gettempdir() if len(tempfile.gettempdir()) <= 32 else "/tmp"
    temp = Path(tempfile.mkdtemp(prefix="rayt-", dir=base))
    return Cluster(temp, free_port(), free_port())


def started_cluster() -> Cluster:
    """A running cluster; a failed start is stopped, cleaned and tried once more afresh.

    On a loaded machine `ray start` can give up ("node timed out during startup"); a second
    attempt with a clean temp folder and fresh ports almost always gets through.
    """
    for attempt in (1, 2):
        cluster = new_cluster()
        try:
            cluster.start()
            return cluster
        except RuntimeError:
            cluster.stop()
            shutil.rmtree(cluster.temp, ignore_errors=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
