"""The test side of the crash harness: drive the fork server, kill its children, judge what survived."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability_child import make_plan, states

CHILD = Path(__file__).with_name("reliability_child.py")


class ForkServer:
    """``reliability_child.py`` running as a fork server; one command at a time."""

    def __init__(self, model_dir: Path, workdir: Path) -> None:
        self.workdir = workdir
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(CHILD.parent), os.environ.get("PYTHONPATH", "")]))
        env.pop("RAGLOOM_CRASH_AT", None)
        env.pop("RAGLOOM_CRASH_TRACE", None)
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "forkserver.log", "ab"),  # noqa: SIM115
            env=env,
            text=True,
        )
        self._buffer = b""
        self._counter = 0
        self._exits: dict[int, int] = {}
        self._last = 0
        self._ready = False

    def ensure_ready(self) -> ForkServer:
        """Wait for the server's imports and model load (started in the background by the constructor)."""
        if not self._ready:
            ready = self._reply(timeout=300)
            assert ready.get("ready"), ready
            self._ready = True
        return self

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"fork server silent for {timeout}s (see {self.workdir / 'forkserver.log'})")
            data = os.read(fd, 1 << 16)
            if not data:
                raise RuntimeError(f"fork server died (see {self.workdir / 'forkserver.log'})")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def start(self, cmd: dict[str, Any]) -> int:
        """Start a command in a fresh child (several may run at once); returns its pid."""
        assert self.process.stdin is not None
        self.ensure_ready()
        self._counter += 1
        cmd = {"log": str(self.workdir / f"child-{self._counter}.log"), **cmd}
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()
        while True:
            reply = self._reply(timeout=60)
            if "exit" in reply:
                self._exits[int(reply["pid"])] = int(reply["exit"])
            else:
                self._last = int(reply["pid"])
                return self._last

    def wait(self, pid: int | None = None, timeout: float = 180) -> int:
        """Wait for a child (default: the last started); its exit code (negative: killed by that signal)."""
        pid = self._last if pid is None else pid
        deadline = time.monotonic() + timeout
        while pid not in self._exits:
            reply = self._reply(timeout=max(0.1, deadline - time.monotonic()))
            if "exit" in reply:
                self._exits[int(reply["pid"])] = int(reply["exit"])
        return self._exits.pop(pid)

    def run(self, cmd: dict[str, Any], timeout: float = 180) -> int:
        return self.wait(self.start(cmd), timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Tally:
    """What a batch of crash runs did (goes into docs/reliability.md)."""

    runs: int = 0
    killed: int = 0
    acked_docs_checked: int = 0
    lost_acked: int = 0
    half_present: int = 0
    diverged: int = 0
    open_errors: int = 0
    recovered: int = 0
    recovery_kills: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "failures"} | {"failures": self.failures[:5]}


def acked_steps(ack_file: Path) -> int:
    try:
        return sum(1 for line in ack_file.read_text().split("\n") if line.startswith("ack "))
    except FileNotFoundError:
        return 0


def candidates_for(
    plan: list[dict[str, Any]], acked: int
) -> tuple[dict[str, int], dict[str, int], dict[str, list[int]]]:
    """The state after the acknowledged steps, the state if the step in flight completed, and every version a
    document may legitimately show."""
    all_states = states(plan)
    before = all_states[acked]
    after = all_states[min(acked + 1, len(plan))]
    versions: dict[str, list[int]] = {}
    for state in (before, after):
        for doc, version in state.items():
            versions.setdefault(doc, [])
            if version not in versions[doc]:
                versions[doc].append(version)
    return before, after, versions


def judge(result: dict[str, Any], plan: list[dict[str, Any]], acked: int, tally: Tally, label: str) -> None:
    """Every acknowledged document present at its version; every document whole; retrievers in step."""
    if "error" in result:
        tally.open_errors += 1
        tally.failures.append(f"{label}: reopen failed: {result['error']}")
        return
    before, after, _ = candidates_for(plan, acked)
    in_flight = set(before) ^ set(after) | {d for d in before if after.get(d) != before[d]}
    verdicts = {name: r["docs"] for name, r in result["retrievers"].items()}
    if any("Recovered an interrupted" in w for w in result.get("warnings", [])):
        tally.recovered += 1
    for name, docs in verdicts.items():
        if result["retrievers"][name]["journal"]:
            tally.failures.append(f"{label}: journal left in {name} after recovery")
        for doc_id, verdict in docs.items():
            if verdict == "MIXED":
                tally.half_present += 1
                tally.failures.append(f"{label}: {name}/{doc_id} is half present")
        for doc_id, version in before.items():
            if doc_id in in_flight:
                continue
            tally.acked_docs_checked += 1
            if docs.get(doc_id) != version:
                tally.lost_acked += 1
                tally.failures.append(f"{label}: {name}/{doc_id} acked at v{version}, found {docs.get(doc_id)}")
        for doc_id in in_flight:
            allowed = {before.get(doc_id, "absent"), after.get(doc_id, "absent")}
            if docs.get(doc_id, "absent") not in allowed and docs.get(doc_id) != "MIXED":
                tally.lost_acked += doc_id in before
                tally.failures.append(f"{label}: {name}/{doc_id} in flight: {docs.get(doc_id)} not in {allowed}")
        for doc_id in set(docs) - set(before) - set(after):
            if docs[doc_id] != "absent" and doc_id not in in_flight:
                tally.failures.append(f"{label}: {name}/{doc_id} deleted before the crash but present")
                tally.lost_acked += 1
    if len(verdicts) > 1:
        first, *others = verdicts.values()
        for other in others:
            for doc_id in set(first) | set(other):
                if first.get(doc_id, "absent") != other.get(doc_id, "absent"):
                    tally.diverged += 1
                    tally.failures.append(
                        f"{label}: {doc_id} differs across indexes: {first.get(doc_id)} vs {other.get(doc_id)}"
                    )
    if result.get("leftover_tmp"):
        tally.failures.append(f"{label}: temp files left: {result['leftover_tmp']}")
    if not result.get("writable"):
        tally.failures.append(f"{label}: index not writable after the crash")


def crash_once(
    server: ForkServer,
    workdir: Path,
    label: str,
    mode: str,
    store: str,
    plan: list[dict[str, Any]],
    tally: Tally,
    *,
    crash_at: str | None = None,
    kill_after: float | None = None,
    trace: Path | None = None,
    recovery_kills: tuple[str, ...] = (),
) -> int:
    """One ingest, killed at a named step (``crash_at``) or after ``kill_after`` seconds, then one reopen. With
    ``recovery_kills``, the recovering reopen is itself killed at each of those steps first (when it gets there)."""
    run_dir = workdir / label
    run_dir.mkdir(parents=True)
    ack = run_dir / "acks"
    index = run_dir / "index"
    env = {}
    if crash_at:
        env["RAGLOOM_CRASH_AT"] = crash_at
    if trace:
        env["RAGLOOM_CRASH_TRACE"] = str(trace)
    base = {"index": str(index), "mode": mode, "store": store}
    pid = server.start({"op": "ingest", **base, "plan": plan, "ack": str(ack), "env": env})
    if kill_after is not None:
        deadline = time.monotonic() + 60
        while "ready" not in (ack.read_text() if ack.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(kill_after)
        with contextlib.suppress(ProcessLookupError):  # it may have finished first
            os.kill(pid, signal.SIGKILL)
    code = server.wait(pid)
    tally.runs += 1
    if code == -signal.SIGKILL:
        tally.killed += 1
    elif code != 0:
        tally.failures.append(f"{label}: ingest child exited {code} (see its log)")
    acked = acked_steps(ack)
    _, _, versions = candidates_for(plan, acked)
    result_file = run_dir / "verify.json"
    for step in recovery_kills:
        env = {"RAGLOOM_CRASH_AT": step}
        cmd = {"op": "verify", **base, "candidates": versions, "result": str(result_file), "env": env, "probe": False}
        code = server.run(cmd)
        tally.recovery_kills += code == -signal.SIGKILL
        result_file.unlink(missing_ok=True)
    server.run({"op": "verify", **base, "candidates": versions, "result": str(result_file)})
    result = json.loads(result_file.read_text()) if result_file.exists() else {"error": "verify child died"}
    judge(result, plan, acked, tally, label)
    return code


def ingest_seconds(
    server: ForkServer, workdir: Path, label: str, mode: str, store: str, plan: list[dict[str, Any]]
) -> float:
    """How long an uninterrupted ingest of ``plan`` takes once the child is ready (for random kill times)."""
    run_dir = workdir / label
    run_dir.mkdir(parents=True)
    ack = run_dir / "acks"
    pid = server.start(
        {"op": "ingest", "index": str(run_dir / "index"), "mode": mode, "store": store, "plan": plan, "ack": str(ack)}
    )
    started = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = ack.read_text() if ack.exists() else ""
        if started is None and "ready" in text:
            started = time.monotonic()
        if "done" in text:
            break
        time.sleep(0.005)
    finished = time.monotonic()
    assert server.wait(pid) == 0
    assert started is not None
    return finished - started


def trace_points(
    server: ForkServer, workdir: Path, mode: str, store: str, plan: list[dict[str, Any]]
) -> tuple[list[str], float]:
    """Every named write step an uninterrupted ingest reaches, in order, and how long the ingest took."""
    trace = workdir / f"trace-{mode}-{store}.txt"
    tally = Tally()
    started = time.monotonic()
    crash_once(server, workdir, f"trace-{mode}-{store}", mode, store, plan, tally, trace=trace)
    elapsed = time.monotonic() - started
    assert not tally.failures, tally.failures
    return trace.read_text().split(), elapsed


__all__ = ["ForkServer", "Tally", "crash_once", "ingest_seconds", "judge", "make_plan", "trace_points"]
