"""What ``workstate serve`` costs over HTTP, against the transport floor, in one run.

Run: ``python benchmarks/bench_serve.py`` (``--smoke``: a tiny run that checks the script works). Loopback only.

Two servers run side by side as processes under the same uvicorn configuration:

- ``workstate serve --port 0 --test-routes --seed-environments N`` (its access log read and thrown away);
- the floor: a bare ASGI app under uvicorn that reads the request and answers one fixed JSON body (a work
  object's size), whatever was asked.

``--clients`` concurrent clients (default 50), each on its own keep-alive connection and in its own
environment, run lifecycles: create an item (the test route), poll, ack, first heartbeat, stop, confirm the
stop (6 requests). The same requests go to the floor. Rounds are interleaved (floor, serve, floor, serve, ...),
so both see the same machine (after one uncounted warm-up); each round prints requests per second and p50/p99
latency, and the run ends with the ratio serve / floor per round (median and spread). Prints figures; asserts
nothing. The load generator runs on the same machine (one process, asyncio), so on 2 cores it competes with
the server it measures, the same way for both.

Then the probe (issue 15: others' throughput stays within 2x): against the same ``workstate serve``,
``--probe-clients`` ordinary clients (default 10, each in its own environment) run the same lifecycles for
``--round-seconds`` (default 3), once alone ("quiet") and once while ``--heavy`` other clients (default 3) keep
sending 1 MB nested JSON bodies (``{"metadata": [[[...]]]}``, as tests/cli/test_serve_command.py sends them) to
the update endpoint of an active item, each answered 400. Quiet and loaded rounds alternate (which goes first
swaps every round), ``--probe-rounds`` (default 7) of each after one uncounted warm-up of each. Every round
prints the ordinary clients' requests/s and latency and the CPU the server and this process used (in cores);
the run ends with the ratio quiet / loaded per round (median and spread). ``--probe-only`` skips the floor
comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE = "/api/v1/cloud/environments"
FIXED = json.dumps(
    {
        "id": "work_" + "1" * 32,
        "type": "work",
        "environment_id": "env_" + "1" * 32,
        "data": {"type": "session", "id": "sess_" + "1" * 32},
        "state": "active",
        "created_at": "2026-07-01T08:15:01.000000Z",
        "acknowledged_at": "2026-07-01T08:15:01.000000Z",
        "started_at": "2026-07-01T08:15:01.000000Z",
        "latest_heartbeat_at": "2026-07-01T08:15:01.000000Z",
        "stop_requested_at": None,
        "stopped_at": None,
        "metadata": {},
    },
    separators=(",", ":"),
).encode()


# --- the floor ----------------------------------------------------------------------------------------------


async def bare(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """An ASGI app that reads the request and answers FIXED."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(FIXED)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": FIXED})


def serve_bare() -> None:
    """Serve the floor on 127.0.0.1, any port, as ``workstate serve`` runs uvicorn; print the listening line."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as workstate serve's: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    config = uvicorn.Config(bare, lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=30)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


# --- the processes ------------------------------------------------------------------------------------------


class Process:
    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.envs: list[str] = []
        self.port = 0
        started = threading.Event()

        def read() -> None:  # every line, then the access log thrown away (a select() could miss buffered lines)
            for line in self.process.stdout or ():
                if line.startswith("environment "):
                    self.envs.append(line.split()[1])
                if line.startswith("listening on http://"):
                    self.port = int(line.rsplit(":", 1)[1])
                    started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(60) or not self.port:
            raise SystemExit(f"{command[:4]} did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# --- the clients --------------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection; ``call`` sends a request and reads its answer (Content-Length framed)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latencies: list[float]) -> None:
        self.reader, self.writer, self.latencies = reader, writer, latencies

    async def call(self, method: str, target: str, headers: str = "", body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench\r\n{headers}"
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        start = time.perf_counter()
        self.writer.write(data)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reply = await self.reader.readexactly(length)
        self.latencies.append(time.perf_counter() - start)
        return int(status_line.split()[1]), reply


async def lifecycles(port: int, env: str, client_no: int, count: int, latencies: list[float], real: bool) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer, latencies)
    worker = f"Worker-ID: w{client_no}\r\n"
    done = 0
    try:
        for n in range(count):
            session = f"sess_{client_no:016x}{n + lifecycles.offset:016x}"  # type: ignore[attr-defined]
            body = json.dumps({"session_id": session}).encode()
            status, reply = await client.call("POST", f"/_test/environments/{env}/work", body=body)
            wid = json.loads(reply)["id"] if real else "work_" + "1" * 32
            status, reply = await client.call("GET", f"{BASE}/{env}/work/poll", worker)
            if real and json.loads(reply)["id"] != wid:
                raise SystemExit(f"client {client_no}: polled {reply[:80]!r}, not {wid}")
            for op in ("ack", "heartbeat", "stop", "stop"):
                status, reply = await client.call("POST", f"{BASE}/{env}/work/{wid}/{op}", worker)
                if status != 200:
                    raise SystemExit(f"client {client_no}: {op} answered {status}: {reply[:200]!r}")
            done += 6
    finally:
        writer.close()
    return done


lifecycles.offset = 0  # type: ignore[attr-defined]


async def load(port: int, envs: list[str], per_client: int, real: bool) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(lifecycles(port, envs[i], i, per_client, latencies, real) for i in range(len(envs)))
    )
    elapsed = time.perf_counter() - start
    lifecycles.offset += per_client  # type: ignore[attr-defined]
    return sum(counts), elapsed, latencies


# --- the probe: ordinary clients beside 1 MB nested bodies ---------------------------------------------------

NESTED_DEPTH = (1_000_000 - 20) // 2
NESTED = b'{"metadata": ' + b"[" * NESTED_DEPTH + b"]" * NESTED_DEPTH + b"}"  # just under MAX_BODY (1 MiB)
probe_sessions = itertools.count(1 << 40)  # apart from the sessions the floor comparison uses


async def timed_lifecycles(port: int, env: str, client_no: int, deadline: float, latencies: list[float]) -> int:
    """Lifecycles (6 requests each, as ``lifecycles``) until ``deadline``; the requests answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer, latencies)
    worker = f"Worker-ID: p{client_no}\r\n"
    done = 0
    try:
        while time.perf_counter() < deadline:
            body = json.dumps({"session_id": f"sess_{client_no:016x}{next(probe_sessions):016x}"}).encode()
            status, reply = await client.call("POST", f"/_test/environments/{env}/work", body=body)
            wid = json.loads(reply)["id"]
            status, reply = await client.call("GET", f"{BASE}/{env}/work/poll", worker)
            if json.loads(reply)["id"] != wid:
                raise SystemExit(f"probe client {client_no}: polled {reply[:80]!r}, not {wid}")
            for op in ("ack", "heartbeat", "stop", "stop"):
                status, reply = await client.call("POST", f"{BASE}/{env}/work/{wid}/{op}", worker)
                if status != 200:
                    raise SystemExit(f"probe client {client_no}: {op} answered {status}: {reply[:200]!r}")
            done += 6
    finally:
        writer.close()
    return done


async def heavy_client(port: int, env: str, wid: str, deadline: float) -> int:
    """1 MB nested bodies to the update endpoint of ``wid`` until ``deadline``; the bodies answered (all 400)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer, [])
    sent = 0
    try:
        while time.perf_counter() < deadline:
            status, reply = await client.call("POST", f"{BASE}/{env}/work/{wid}", body=NESTED)
            if status != 400:
                raise SystemExit(f"heavy client: the nested body answered {status}: {reply[:200]!r}")
            sent += 1
    finally:
        writer.close()
    return sent


async def probe_round(
    port: int, envs: list[str], target: tuple[str, str], heavy: int, seconds: float
) -> tuple[int, float, list[float], int]:
    """One round: ordinary clients (one per env) for ``seconds``, beside ``heavy`` heavy clients."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    ordinary = [timed_lifecycles(port, env, i, deadline, latencies) for i, env in enumerate(envs)]
    heavies = [heavy_client(port, *target, deadline) for _ in range(heavy)]
    counts = await asyncio.gather(*ordinary, *heavies)
    elapsed = time.perf_counter() - start  # the last lifecycle started before the deadline finishes after it
    return sum(counts[: len(envs)]), elapsed, latencies, sum(counts[len(envs) :])


async def active_item(port: int, env: str) -> str:
    """An item of ``env`` held ``active`` by worker ``h`` (the heavy clients' target, as the tests' probe)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer, [])
    try:
        body = json.dumps({"session_id": "sess_" + "f" * 32}).encode()
        wid = json.loads((await client.call("POST", f"/_test/environments/{env}/work", body=body))[1])["id"]
        await client.call("GET", f"{BASE}/{env}/work/poll", "Worker-ID: h\r\n")
        for op in ("ack", "heartbeat"):
            status, reply = await client.call("POST", f"{BASE}/{env}/work/{wid}/{op}", "Worker-ID: h\r\n")
            if status != 200:
                raise SystemExit(f"the heavy clients' item: {op} answered {status}: {reply[:200]!r}")
    finally:
        writer.close()
    return wid


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` used so far; 0 where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe(serve: Process, clients: int, heavy: int, seconds: float, rounds: int) -> None:
    envs, target_env = serve.envs[:clients], serve.envs[clients]
    target = (target_env, asyncio.run(active_item(serve.port, target_env)))
    print(
        f"probe: {clients} ordinary clients, {seconds:g} s a round, alone (quiet) and beside {heavy} clients"
        f" sending {len(NESTED):,}-byte nested bodies (loaded)"
    )
    for contenders in (0, heavy):  # warm-up, not counted
        asyncio.run(probe_round(serve.port, envs, target, contenders, min(seconds, 1.0)))
    ratios = []
    for round_no in range(rounds):
        rates = {}
        order = (("quiet", 0), ("loaded", heavy)) if round_no % 2 == 0 else (("loaded", heavy), ("quiet", 0))
        for name, contenders in order:
            server_cpu, own_cpu = cpu_seconds(serve.process.pid), time.process_time()
            requests, elapsed, latencies, bodies = asyncio.run(
                probe_round(serve.port, envs, target, contenders, seconds)
            )
            server_cpu, own_cpu = cpu_seconds(serve.process.pid) - server_cpu, time.process_time() - own_cpu
            rates[name] = requests / elapsed
            cpu = f", CPU: serve {server_cpu / elapsed:.2f}, clients {own_cpu / elapsed:.2f} cores"
            extra = f", {bodies} nested bodies ({bodies * len(NESTED) / elapsed / 1e6:.1f} MB/s)" if contenders else ""
            print(
                f"probe round {round_no + 1} {name}: {requests} requests in {elapsed:.2f} s = {rates[name]:,.0f}"
                f" requests/s, p50 {quantile(latencies, 0.5) * 1000:.2f} ms, p99 {quantile(latencies, 0.99) * 1000:.2f}"
                f" ms{cpu}{extra}"
            )
        ratios.append(rates["quiet"] / rates["loaded"])
        print(f"probe round {round_no + 1} quiet / loaded: {ratios[-1]:.2f}")
    spread = f"{min(ratios):.2f} to {max(ratios):.2f}"
    verdict = "within" if statistics.median(ratios) <= 2 else "over"
    print(f"probe quiet / loaded requests/s: median {statistics.median(ratios):.2f} (rounds: {spread}); {verdict} 2x")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--lifecycles", type=int, default=40, help="lifecycles per client per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--probe-clients", type=int, default=10, help="the probe's ordinary clients")
    parser.add_argument("--heavy", type=int, default=3, help="the probe's clients sending 1 MB nested bodies")
    parser.add_argument("--round-seconds", type=float, default=3.0, help="the length of a probe round")
    parser.add_argument("--probe-rounds", type=int, default=7, help="probe rounds (each: quiet and loaded)")
    parser.add_argument("--probe-only", action="store_true", help="skip the floor comparison")
    parser.add_argument("--smoke", action="store_true", help="2 clients, 2 lifecycles, 1 round; a 0.3 s probe round")
    parser.add_argument("--bare-serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_serve:
        serve_bare()
        return
    if args.smoke:
        args.clients, args.lifecycles, args.rounds = 2, 2, 1
        args.probe_clients, args.heavy, args.round_seconds, args.probe_rounds = 2, 1, 0.3, 1
    print(f"Python {platform.python_version()}, {platform.machine()}, {args.clients} clients, loopback")
    seeds = ["--seed-environments", str(max(args.clients, args.probe_clients + 1))]
    serve = Process([sys.executable, "-m", "workstate", "serve", "--port", "0", "--test-routes", *seeds])
    try:
        if not args.probe_only:
            compare(serve, args.lifecycles, args.rounds, args.clients)
        probe(serve, args.probe_clients, args.heavy, args.round_seconds, args.probe_rounds)
    finally:
        serve.close()


def compare(serve: Process, per_client: int, rounds: int, clients: int) -> None:
    """``workstate serve`` against the floor, in interleaved rounds."""
    floor = Process([sys.executable, __file__, "--bare-serve"])
    envs = serve.envs[:clients]  # the floor ignores them
    ratios = []
    try:
        for process, real in ((floor, False), (serve, True)):  # warm-up: connections, imports, caches; not counted
            asyncio.run(load(process.port, envs, 2, real))
        for round_no in range(rounds):
            figures = {}
            for name, process, real in (("floor", floor, False), ("serve", serve, True)):
                requests, elapsed, latencies = asyncio.run(load(process.port, envs, per_client, real))
                rate = requests / elapsed
                figures[name] = rate
                print(
                    f"round {round_no + 1} {name}: {requests} requests in {elapsed:.2f} s = {rate:,.0f} requests/s,"
                    f" p50 {quantile(latencies, 0.5) * 1000:.2f} ms, p99 {quantile(latencies, 0.99) * 1000:.2f} ms"
                )
            ratios.append(figures["serve"] / figures["floor"])
    finally:
        floor.close()
    spread = f"{min(ratios):.2f} to {max(ratios):.2f}"
    print(f"serve / floor requests/s: median {statistics.median(ratios):.2f} (rounds: {spread})")


if __name__ == "__main__":
    main()
