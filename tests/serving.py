"""A real ``softmax serve`` for tests and benchmarks: the installed entry point on 127.0.0.1,
a free port chosen by the server itself (``--port 0``), stopped with a signal."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conftest import SOFTMAX


@dataclass
class Server:
    """A running ``softmax serve``: its base URL (``http://127.0.0.1:PORT/``) and process."""

    url: str
    proc: subprocess.Popen
    stderr: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> tuple[int, list[str]]:
        """Send ``sig``, wait for the exit; return the exit code and every stderr line."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.reader.join(timeout)
        return code, self.stderr


def _read_lines(stream, into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


@contextlib.contextmanager
def running_server(checkpoint: Path | str, *args: str, cwd: Path | None = None, timeout: float = 60):
    """Start ``softmax serve CHECKPOINT --port 0 ARGS``, wait until ``/healthz`` answers, yield a
    :class:`Server`; SIGINT it on leaving (if still running)."""
    proc = subprocess.Popen([SOFTMAX, "serve", str(checkpoint), "--port", "0", *args], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    server = None
    try:
        deadline = time.monotonic() + timeout
        while server is None:
            found = [m for m in map(re.compile(r" on (http://\S+?/) ").search, lines) if m]
            if found:
                server = Server(found[0].group(1), proc, lines, reader)
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"softmax serve did not start: {lines}")
            else:
                time.sleep(0.05)
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "healthz", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"softmax serve did not answer /healthz: {lines}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
