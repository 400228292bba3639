"""Parsing untrusted files in a worker process, under a time limit and a memory limit.

PDFium hangs for ever on a PDF whose form draws itself and allocates gigabytes for a 1 MB flate bomb; lexbor
needs minutes for an HTML page nested a few hundred thousand tags deep. Inside a worker each is one
:class:`~ragloom.errors.DocumentLoadError` and the host process never notices. The worker is started on first
use and reused for every later file (a folder ingest pays its ~0.3 s start once); a worker that times out or
dies is replaced. Limits come from :func:`configure_parsing` or the environment: ``RAGLOOM_PARSER_ISOLATION=0``
parses in-process (no limits), ``RAGLOOM_PARSER_TIMEOUT`` (seconds per file, default 120) and
``RAGLOOM_PARSER_MEMORY_MB`` (default 2048).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from ragloom.errors import ConfigError, DocumentLoadError

__all__ = ["ParserLimits", "configure_parsing", "current_limits", "run_isolated"]

FRAME = struct.Struct(">Q")


@dataclass(frozen=True)
class ParserLimits:
    """How untrusted files are parsed: in a worker process (``isolate``), ``timeout`` s and ``memory_mb`` each."""

    isolate: bool = True
    timeout: float = 120.0
    memory_mb: int = 2048


def _env_limits() -> ParserLimits:
    try:
        return ParserLimits(
            isolate=os.environ.get("RAGLOOM_PARSER_ISOLATION", "1").strip().lower() not in ("0", "false", "no", "off"),
            timeout=float(os.environ.get("RAGLOOM_PARSER_TIMEOUT", "120")),
            memory_mb=int(os.environ.get("RAGLOOM_PARSER_MEMORY_MB", "2048")),
        )
    except ValueError as exc:
        raise ConfigError(f"RAGLOOM_PARSER_TIMEOUT / RAGLOOM_PARSER_MEMORY_MB must be numbers: {exc}") from exc


_limits: ParserLimits | None = None


def current_limits() -> ParserLimits:
    return _limits if _limits is not None else _env_limits()


def configure_parsing(
    *, isolate: bool | None = None, timeout: float | None = None, memory_mb: int | None = None
) -> ParserLimits:
    """Change how untrusted PDF and HTML files are parsed (process-wide); returns the previous limits.

    ``isolate=False`` parses in this process: fastest, no limits, for trusted files only.
    """
    global _limits
    previous = current_limits()
    updated = replace(
        previous,
        isolate=previous.isolate if isolate is None else isolate,
        timeout=previous.timeout if timeout is None else timeout,
        memory_mb=previous.memory_mb if memory_mb is None else memory_mb,
    )
    if updated.timeout <= 0 or updated.memory_mb < 64:
        raise ConfigError(f"Parser limits need timeout > 0 and memory_mb >= 64, got {updated}")
    _limits = updated
    return previous


class _Worker:
    """One parser process: requests (a kind byte + payload) and JSON replies are length-prefixed frames."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.owner = os.getpid()
        env = dict(os.environ, RAGLOOM_PARSER_WORKER_MEMORY_MB=str(memory_mb))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ragloom.loaders._parser_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def kill(self) -> None:
        if self.owner != os.getpid():
            return  # a forked child must not touch its parent's worker
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        parts: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            part = os.read(fd, min(size, 1 << 20))
            if not part:
                raise EOFError
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def call(self, kind: bytes, payload: bytes, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        deadline = time.monotonic() + timeout
        self.process.stdin.write(FRAME.pack(len(payload) + 1) + kind + payload)
        self.process.stdin.flush()
        (size,) = FRAME.unpack(self._read_exactly(FRAME.size, deadline))
        found: dict[str, Any] = json.loads(self._read_exactly(size, deadline))
        if "pixels_size" in found:  # raw bytes follow (a rendered page), never decoded as anything but pixels
            (size,) = FRAME.unpack(self._read_exactly(FRAME.size, deadline))
            found["pixels"] = self._read_exactly(size, deadline)
        return found


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def stop_worker() -> None:
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.kill()
            _worker = None


atexit.register(stop_worker)


def run_isolated(kind: bytes, payload: bytes, path: str, what: str, limits: ParserLimits) -> dict[str, Any]:
    """Parse ``payload`` (``kind`` b"P" PDF text, b"R" a PDF page's pixels, b"H" HTML) in the worker; limits
    breached become load errors."""
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.alive() or _worker.memory_mb != limits.memory_mb:
            if _worker is not None:
                _worker.kill()
            _worker = _Worker(limits.memory_mb)
        worker = _worker
        try:
            return worker.call(kind, payload, limits.timeout)
        except TimeoutError:
            worker.kill()
            _worker = None
            raise DocumentLoadError(
                path,
                f"{what} parsing took longer than {limits.timeout:g}s and was stopped (a malformed or hostile "
                "file?); raise the limit with RAGLOOM_PARSER_TIMEOUT or configure_parsing(timeout=...)",
            ) from None
        except (EOFError, OSError, ValueError):
            worker.kill()
            code = worker.process.returncode
            _worker = None
            raise DocumentLoadError(
                path,
                f"the {what} parser crashed or exceeded its {limits.memory_mb} MiB memory limit (worker exit "
                f"status {code}); raise the limit with RAGLOOM_PARSER_MEMORY_MB or configure_parsing(memory_mb=...)",
            ) from None
