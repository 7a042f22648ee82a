"""The server under test: tests/integration/python_clients.rs starts one and passes its address."""

import os

import pytest


@pytest.fixture(scope="session")
def dsn():
    return os.environ["SEMSQL_DSN"]


@pytest.fixture(scope="session")
def url():
    """host:port/dbname for URL-style clients (SQLAlchemy)."""
    return os.environ["SEMSQL_URL"]
