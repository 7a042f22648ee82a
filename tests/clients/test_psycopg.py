"""psycopg 3 as applications use it: parameters of every common type in text and binary,
prepared statements (psycopg prepares a query after its fifth run), savepoints through
nested transactions, and errors with PostgreSQL's SQLSTATEs and wording."""

import datetime
import decimal
import uuid

import psycopg
import pytest
from psycopg.types.json import Json, Jsonb


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


VALUES = [
    42,
    -7,
    2**40,
    1.5,
    True,
    "héllo",
    b"\x00\xff",
    datetime.date(2020, 1, 2),
    datetime.datetime(2020, 1, 2, 3, 4, 5),
    [1, 2, 3],
]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_parameter_comes_back_as_sent(conn, value, binary):
    with conn.cursor(binary=binary) as cur:
        cur.execute("SELECT %s", (value,))
        assert cur.fetchone()[0] == value


def test_numeric_and_timestamptz_parameters(conn):
    got = conn.execute("SELECT %s + 1", (decimal.Decimal("1.25"),)).fetchone()[0]
    assert got == decimal.Decimal("2.25")
    moment = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert conn.execute("SELECT %s", (moment,)).fetchone()[0] == moment


def test_null_and_untyped_parameters(conn):
    assert conn.execute("SELECT %s", (None,)).fetchone()[0] is None
    assert conn.execute("SELECT %s || %s", ("a", "b")).fetchone()[0] == "ab"
    assert conn.execute("SELECT %s::int * 2", (21,)).fetchone()[0] == 42


def test_prepared_statements_keep_working(dsn):
    # psycopg prepares a statement after its fifth run; a protocol slip shows up there.
    with psycopg.connect(dsn) as conn:
        for i in range(60):
            assert conn.execute("SELECT %s, %s::text", (i, str(i))).fetchone() == (i, str(i))


def test_savepoints_through_nested_transactions(dsn):
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS psy_sp (id INT)")
        conn.execute("DELETE FROM psy_sp")
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO psy_sp VALUES (1)")
            with pytest.raises(psycopg.errors.DivisionByZero):
                with conn.transaction():
                    conn.execute("INSERT INTO psy_sp VALUES (2)")
                    conn.execute("SELECT 1 / 0")
            with conn.transaction():
                conn.execute("INSERT INTO psy_sp VALUES (3)")
        rows = conn.execute("SELECT id FROM psy_sp ORDER BY id").fetchall()
        assert rows == [(1,), (3,)]


def test_errors_carry_postgres_codes_and_words(conn):
    with pytest.raises(psycopg.errors.UndefinedTable, match='relation "nope" does not exist'):
        conn.execute("SELECT * FROM nope")
    with pytest.raises(psycopg.errors.UndefinedColumn, match='column "nope" does not exist'):
        conn.execute("SELECT nope FROM (SELECT 1 AS a) t")
    with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
        conn.execute("SELECT 10 / 0")
    # The connection keeps working after each.
    assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_catalog_functions_drivers_call(conn):
    row = conn.execute(
        "SELECT current_setting('server_version_num'), pg_type_is_visible(23), "
        "pg_get_serial_sequence('t', 'id'), obj_description(1, 'pg_class')"
    ).fetchone()
    assert row == ("150018", True, None, None)
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SELECT current_setting('no_such_setting')")
    assert conn.execute("SELECT current_setting('no_such_setting', true)").fetchone()[0] is None


def test_to_regtype_knows_our_types_only(conn):
    # `regtype` is an OID: psycopg's TypeInfo.fetch compares it with pg_type.oid. semsql prints
    # it as the number where PostgreSQL prints the name (docs/sql.md).
    row = conn.execute("SELECT to_regtype('int4'), to_regtype('hstore'), to_regtype('vector')").fetchone()
    assert row == (23, None, 16385)
    names = conn.execute(
        "SELECT typname FROM pg_type WHERE oid IN (to_regtype('integer'), to_regtype('vector')) ORDER BY oid"
    ).fetchall()
    assert names == [("int4",), ("vector",)]


@pytest.mark.parametrize("binary", [False, True])
def test_uuid_and_json_parameters_bind_as_their_text(conn, binary):
    # semsql keeps uuid and json values as text: they bind in either format and come back as
    # their text (PostgreSQL would return uuid and json values).
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    conn.execute("CREATE TABLE IF NOT EXISTS psy_docs (id TEXT, doc TEXT)")
    conn.execute("DELETE FROM psy_docs")
    with conn.cursor(binary=binary) as cur:
        cur.execute("INSERT INTO psy_docs VALUES (%s, %s)", (key, Jsonb({"a": 1})))
        cur.execute("INSERT INTO psy_docs VALUES (%s, %s)", (uuid.uuid4(), Json([1, 2])))
        cur.execute("SELECT doc FROM psy_docs WHERE id = %s", (key,))
        assert cur.fetchall() == [('{"a": 1}',)]
