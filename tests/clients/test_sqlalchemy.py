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


def test_inspector_reflects_columns_keys_and_indexes(engine):
    """What PostgreSQL 15 reflects for the same table (less the vector index, which needs
    pgvector there), with `'x'` where PostgreSQL says `'x'::text`."""
    table = f"sa_columns_{engine.dialect.driver}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, note TEXT DEFAULT 'x', "
                "price NUMERIC(10, 2), created TIMESTAMP, flag BOOLEAN NOT NULL, "
                "a INT, b TEXT, e vector(3), code VARCHAR(20), UNIQUE (a, b))"
            )
        )
        conn.execute(sa.text(f"CREATE INDEX {table}_e ON {table} USING hnsw (e vector_l2_ops)"))
    inspector = sa.inspect(engine)
    columns = {column["name"]: column for column in inspector.get_columns(table)}
    assert list(columns) == ["id", "note", "price", "created", "flag", "a", "b", "e", "code"]
    assert [column["nullable"] for column in columns.values()] == [
        False, True, True, True, False, True, True, True, True,
    ]
    assert isinstance(columns["id"]["type"], sa.INTEGER)
    assert isinstance(columns["note"]["type"], sa.TEXT)
    assert isinstance(columns["price"]["type"], sa.NUMERIC)
    assert (columns["price"]["type"].precision, columns["price"]["type"].scale) == (10, 2)
    assert isinstance(columns["created"]["type"], sa.TIMESTAMP)
    assert isinstance(columns["flag"]["type"], sa.BOOLEAN)
    assert isinstance(columns["code"]["type"], sa.VARCHAR)
    assert columns["code"]["type"].length == 20
    assert columns["note"]["default"] == "'x'::text"
    assert columns["id"]["default"] is None

    primary = inspector.get_pk_constraint(table)
    assert primary["name"] == f"{table}_pkey"
    assert primary["constrained_columns"] == ["id"]
    unique = inspector.get_unique_constraints(table)
    assert [(key["name"], key["column_names"]) for key in unique] == [
        (f"{table}_a_b_key", ["a", "b"])
    ]
    assert inspector.get_foreign_keys(table) == []
    indexes = {index["name"]: index for index in inspector.get_indexes(table)}
    assert set(indexes) == {f"{table}_a_b_key", f"{table}_e"}
    assert indexes[f"{table}_a_b_key"]["unique"] is True
    assert indexes[f"{table}_e"]["column_names"] == ["e"]
    assert indexes[f"{table}_e"]["dialect_options"]["postgresql_using"] == "hnsw"

    # The whole table, as `MetaData.reflect` (and Superset, pandas' to_sql) reads it.
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    assert [column.name for column in reflected.primary_key.columns] == ["id"]
    with engine.begin() as conn:
        conn.execute(reflected.insert().values(id=1, flag=True))
        stored = conn.execute(sa.select(reflected.c.note).where(reflected.c.id == 1)).scalar()
        assert stored == "x"
        with pytest.raises(sa.exc.IntegrityError):
            with conn.begin_nested():
                conn.execute(reflected.insert().values(id=1, flag=False))
