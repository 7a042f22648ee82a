"""pgcli's completion refresher, as it runs when pgcli connects: its own PGExecute queries for
schemas, tables, views, columns (with their types), functions, data types, databases and the
search path. Not covered, with the reason in docs/sql.md: `foreignkeys()` (its query reads
`conkey` from a derived table inside a correlated subquery, which DataFusion cannot plan:
0A000; semsql has no foreign keys to list)."""

import psycopg
import pytest
from pgcli.pgexecute import PGExecute


@pytest.fixture
def executor(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW IF EXISTS pgcli_recent")
        conn.execute("DROP TABLE IF EXISTS pgcli_orders")
        conn.execute("CREATE TABLE pgcli_orders (id INT, placed TIMESTAMP, note TEXT, score DOUBLE PRECISION)")
        conn.execute("CREATE VIEW pgcli_recent AS SELECT id, note FROM pgcli_orders")
    executor = PGExecute(dsn=dsn)
    yield executor
    executor.conn.close()


def test_completion_metadata(executor):
    assert {"public", "pg_catalog"} <= set(executor.schemata())
    assert executor.search_path()[:2] == ["pg_catalog", "public"]
    assert ("public", "pgcli_orders") in list(executor.tables())
    views = list(executor.views())
    assert ("public", "pgcli_recent") in views
    assert ("public", "pgcli_orders") not in views
    columns = [
        (table, column, type_name)
        for schema, table, column, type_name, _has_default, _default in executor.table_columns()
        if schema == "public" and table == "pgcli_orders"
    ]
    assert columns == [
        ("pgcli_orders", "id", "integer"),
        ("pgcli_orders", "placed", "timestamp without time zone"),
        ("pgcli_orders", "note", "text"),
        ("pgcli_orders", "score", "double precision"),
    ]
    view_columns = [
        (column, type_name)
        for schema, table, column, type_name, _has_default, _default in executor.view_columns()
        if table == "pgcli_recent"
    ]
    assert view_columns == [("id", "integer"), ("note", "text")]
    assert list(executor.datatypes()) == []
    assert "semsql" in list(executor.databases())


def test_function_completions(executor):
    """pgcli lists functions with their argument and result types, read from
    `proargtypes::regtype[]`."""
    functions = {
        (function.schema_name, function.func_name, tuple(function.arg_types or ()), function.return_type)
        for function in executor.functions()
    }
    assert ("pg_catalog", "lower", ("text",), "text") in functions
    assert ("pg_catalog", "abs", ("double precision",), "double precision") in functions
