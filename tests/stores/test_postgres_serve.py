"""``workstate serve --db postgresql://...`` passes ``workstate conform --url`` over HTTP (the boundary cases; every
case with ``WORKSTATE_PG_FULL_CONFORMANCE=1``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg

FULL = os.environ.get("WORKSTATE_PG_FULL_CONFORMANCE") == "1"


# --- workstate serve --db postgresql://... passing workstate conform --url ---------------------------------------


def test_serve_on_postgres_passes_conform_over_http(postgres_dsn: str) -> None:
    command = ["serve", "--db", postgres_dsn, "--port", "0", "--test-clock", "--test-routes"]
    serve = subprocess.Popen(
        [sys.executable, "-m", "workstate", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        url = None
        for _ in range(20):
            line = serve.stdout.readline()
            if not line:
                break
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
        assert url is not None, serve.stderr.read() if serve.poll() is not None else "no listening line"
        # drain the access log (one line a request), or the server blocks on a full pipe
        threading.Thread(target=serve.stdout.read, daemon=True).start()
        threading.Thread(target=serve.stderr.read, daemon=True).start()
        only = [] if FULL else ["--only", os.environ.get("WORKSTATE_PG_CONFORM_ONLY", "!*@*")]
        conform = subprocess.run(
            [sys.executable, "-m", "workstate", "conform", "--url", url, "--no-progress", *only],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert conform.returncode == 0, conform.stdout[-3000:] + conform.stderr[-3000:]
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM workstate_items").fetchone()
    assert row is not None and row[0] > 300  # the answers came through the database
