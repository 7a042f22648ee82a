"""SQLAlchemy 2 over psycopg 3 and psycopg2: connecting (which reads version() and
settings), nested transactions (SAVEPOINT), the inspector, and pandas.read_sql."""

import pandas
import pytest
import sqlalchemy as sa


@pytest.fixture(params=["psycopg", "psycopg2"])
def engine(request, url):
    engine = sa.create_engine(f"postgresql+{request.param}://{url}")
    yield engine
    engine.dispose()


def test_connect_query_and_nested_transactions(engine):
    table = f"sa_items_{engine.dialect.driver}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} (id INT, name TEXT)"))
        conn.execute(sa.text(f"DELETE FROM {table}"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (:id, :name)"), {"id": 1, "name": "a"})
        nested = conn.begin_nested()
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (2, 'b')"))
        nested.rollback()
        with conn.begin_nested():
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (3, 'c')"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, name FROM {table} ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "a"), (3, "c")]
        frame = pandas.read_sql(sa.text(f"SELECT id, name FROM {table} ORDER BY id"), conn)
        assert frame["id"].tolist() == [1, 3]
        assert frame["name"].tolist() == ["a", "c"]


def test_inspector_lists_tables_and_columns(engine):
    table = f"sa_reflect_{engine.dialect.driver}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} (id INT NOT NULL, note TEXT)"))
    inspector = sa.inspect(engine)
    assert table in inspector.get_table_names()
    assert inspector.has_table(table)
    # Sent with `nspname NOT LIKE <param> || '%' ESCAPE '/'`.
    schemas = inspector.get_schema_names()
    assert "public" in schemas
    assert not any(name.startswith("pg_") for name in schemas)
