"""Ctrl-C, sent for real: run ``python -m workstate ...`` and send it SIGINT once its stderr shows progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import attrs


@attrs.frozen
class Interrupted:
    status: int
    out: str
    err: str


def _pump(stream: object, into: list[bytes], marker: bytes | None, seen: threading.Event) -> None:
    fd = stream.fileno()  # type: ignore[attr-defined]
    while chunk := os.read(fd, 4096):
        into.append(chunk)
        if marker is not None and marker in b"".join(into):
            seen.set()
    seen.set()  # the stream closed: whatever came, the waiter stops waiting


def interrupt_after(argv: list[str], marker: str, timeout: float = 300) -> Interrupted:
    """Run ``workstate *argv``, wait (at most ``timeout`` seconds, no timing asserted) until its standard error
    shows ``marker``, send SIGINT, and return its exit status and output. The process is always stopped."""
    command = [sys.executable, "-m", "workstate", *argv]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[bytes] = []
    err: list[bytes] = []
    seen, closed = threading.Event(), threading.Event()
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, None, closed), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, marker.encode(), seen), daemon=True),
    ]
    try:
        for pump in pumps:
            pump.start()
        seen.wait(timeout)
        shown = b"".join(err).decode(errors="replace")
        assert marker in shown, f"no {marker!r} on stderr: {shown[-2000:]}"
        assert proc.poll() is None, "the command finished before it could be interrupted: make it bigger"
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout)
        for pump in pumps:
            pump.join(timeout)
        return Interrupted(status, b"".join(out).decode(), b"".join(err).decode())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
