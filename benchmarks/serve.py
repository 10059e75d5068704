"""Requests per second and latency of ``softmax serve`` for single-image requests on loopback.

    python benchmarks/serve.py CHECKPOINT                 # 10,000 requests from 8 clients
    python benchmarks/serve.py CHECKPOINT --workers 2 --requests 2000

Starts the installed ``softmax serve CHECKPOINT --port 0 --workers N`` on 127.0.0.1, then
``--clients`` threads, each with its own keep-alive ``httpx.Client``, POST one PNG per request
(the ten ``data/samples/mnist-*.png`` in turn, as multipart, the way the drawing page sends its
canvas) until ``--requests`` are done, after a warm-up of 200. It prints the throughput, the
latency percentiles (p50, p90, p99, max) and the errors: a request that failed or got any
status but 200.

The peer, measured in the same run: the same requests answered in this process by
``softmax_cli.predict.classify`` (decode, normalise, forward pass; no HTTP), one image per
call in one thread: what one worker could do with no server around it. The ratio says what
HTTP, multipart parsing and the event loop cost. The clients run in this process, so on a
small machine they take CPU from the server: say so when quoting the figures.

Target (issue 21): no errors in 10,000 requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from serving import running_server  # noqa: E402  (starts the real `softmax serve`)

SAMPLES = sorted((ROOT / "data" / "samples").glob("mnist-*.png"))


def client(url: str, images: list[tuple[str, bytes]], take, latencies: list[float], errors: list[str]) -> None:
    """Post images one per request while ``take()`` hands out request numbers."""
    with httpx.Client(timeout=30) as http:
        while (i := take()) is not None:
            name, data = images[i % len(images)]
            start = time.perf_counter()
            try:
                response = http.post(url, files={"files": (name, data, "image/png")})
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - start)


def load(url: str, images, n: int, clients: int) -> tuple[float, list[float], list[str]]:
    """``n`` requests from ``clients`` threads: (seconds, latencies in seconds, errors)."""
    lock, counter = threading.Lock(), iter(range(n))

    def take():
        with lock:
            return next(counter, None)

    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=client, args=(url, images, take, latencies, errors)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, errors


def in_process_rate(checkpoint: Path, images: list[tuple[str, bytes]], seconds: float = 5.0) -> float:
    """Images per second that ``classify`` answers one at a time in this thread (no HTTP)."""
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.predict import classify
    from softmax_cli.serve.app import Upload

    ckpt = load_checkpoint(checkpoint)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        name, data = images[done % len(images)]
        classify(ckpt, [Upload(data, name)])
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    images = [(p.name, p.read_bytes()) for p in SAMPLES]
    print(f"softmax serve {args.checkpoint} --workers {args.workers}; {args.clients} client threads, "
          f"{args.requests:,} single-image requests (the ten {SAMPLES[0].parent.name}/mnist-*.png, "
          f"{min(len(d) for _, d in images)}-{max(len(d) for _, d in images)} bytes), "
          f"{os.cpu_count()} cores", flush=True)
    with running_server(args.checkpoint, "--workers", str(args.workers)) as server:
        url = server.url + "predict"
        load(url, images, 200, args.clients)                                     # warm-up
        seconds, latencies, errors = load(url, images, args.requests, args.clients)
        code, log = server.stop()
    rate = args.requests / seconds
    ms = np.percentile(np.array(latencies) * 1e3, [50, 90, 99, 100])
    print(f"throughput      {rate:,.0f} requests/s ({args.requests:,} in {seconds:.1f} s)")
    print(f"latency         p50 {ms[0]:.1f} ms, p90 {ms[1]:.1f} ms, p99 {ms[2]:.1f} ms, max {ms[3]:.1f} ms "
          f"(mean {statistics.fmean(latencies) * 1e3:.1f} ms)")
    print(f"errors          {len(errors)} of {args.requests:,}" + (f"; first: {errors[0]}" if errors else ""))
    peer = in_process_rate(args.checkpoint, images)
    print(f"peer            classify() in one thread, no HTTP: {peer:,.0f} images/s; the server gives "
          f"{rate / peer:.2f}x that with {args.workers} worker{'s' if args.workers > 1 else ''}")
    print(f"server stopped  exit {code}; its stderr: {log[1:] or 'nothing after the start-up line'}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
