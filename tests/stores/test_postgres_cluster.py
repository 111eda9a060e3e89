"""The throw-away cluster itself: it answers on loopback, and each test gets a database of its own."""

from __future__ import annotations

import psycopg
from pg import Cluster


def test_the_cluster_answers_on_loopback_and_each_test_gets_an_empty_database(
    postgres_cluster: Cluster, postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_database(), inet_server_addr()::text, count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert row is not None
    assert row[0] != "postgres" and row[0].startswith("test_")
    assert row[1] == "127.0.0.1/32"
    assert row[2] == 0
    assert postgres_dsn != postgres_cluster.new_database()
