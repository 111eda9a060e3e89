"""The stores' tests: the throw-away PostgreSQL cluster's fixtures (tests/stores/pg.py)."""

from pg import postgres_cluster, postgres_dsn

__all__ = ["postgres_cluster", "postgres_dsn"]
