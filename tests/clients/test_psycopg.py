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


@pytest.mark.parametrize("binary", [False, True])
def test_uuid_columns_are_uuids(conn, binary):
    conn.execute("DROP TABLE IF EXISTS psy_uuids")
    conn.execute("CREATE TABLE psy_uuids (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int)")
    key = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    with conn.cursor(binary=binary) as cur:
        cur.execute("INSERT INTO psy_uuids VALUES (%s, 1)", (key,))
        # Any form PostgreSQL reads is stored in its canonical form.
        cur.execute("INSERT INTO psy_uuids VALUES ('{B0EEBC999C0B4EF8BB6D6BB9BD380A11}', 2)")
        cur.execute("INSERT INTO psy_uuids (n) VALUES (3)")
        cur.execute("SELECT id, n FROM psy_uuids ORDER BY n")
        rows = cur.fetchall()
        assert cur.description[0].type_code == 2950
        assert rows[0] == (key, 1)
        assert rows[1] == (uuid.UUID("b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), 2)
        assert isinstance(rows[2][0], uuid.UUID) and rows[2][0].version == 4
        cur.execute("SELECT n FROM psy_uuids WHERE id = %s", (key,))
        assert cur.fetchall() == [(1,)]
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="type uuid"):
        conn.execute("INSERT INTO psy_uuids VALUES ('not-a-uuid', 4)")


@pytest.mark.parametrize("binary", [False, True])
def test_values_arrow_pg_could_not_send(conn, binary):
    with conn.cursor(binary=binary) as cur:
        cur.execute(
            "SELECT [[1, 2], [3, 4]], [['a b', NULL]], NULL::interval, interval '1 day 3 seconds',"
            " [interval '2 days', NULL], arrow_cast(12345.678, 'Decimal256(45, 3)'),"
            " arrow_cast(X'01ff', 'FixedSizeBinary(2)'), 1e-38::numeric(38, 38)"
        )
        assert cur.fetchone() == (
            [[1, 2], [3, 4]],
            [["a b", None]],
            None,
            datetime.timedelta(days=1, seconds=3),
            [datetime.timedelta(days=2), None],
            decimal.Decimal("12345.678"),
            b"\x01\xff",
            decimal.Decimal("1e-38"),
        )
        # A map has no PostgreSQL type: it is sent as DataFusion's text.
        cur.execute("SELECT map(['a', 'b'], [1, 2])")
        assert cur.fetchone() == ("{a: 1, b: 2}",)
    # A ragged list prints in text; binary arrays must be rectangular, as PostgreSQL's are.
    if binary:
        with pytest.raises(psycopg.errors.ArraySubscriptError):
            conn.cursor(binary=True).execute("SELECT [[1, 2], [3]]").fetchall()
    else:
        assert conn.execute("SELECT [[1, 2], [3]]::text").fetchone() is not None
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_char_and_interval_columns(conn):
    conn.execute("DROP TABLE IF EXISTS psy_fixed")
    conn.execute("CREATE TABLE psy_fixed (c char(5), i interval)")
    conn.execute(
        "INSERT INTO psy_fixed VALUES ('ab', interval '1 year 2 mons 3 days 04:05:06.000007'),"
        " ('abc  ', NULL)"
    )
    rows = conn.execute(
        "SELECT c, i, c = 'ab', length(c), c || '|' FROM psy_fixed ORDER BY c"
    ).fetchall()
    assert rows[0][0] == "ab   "
    assert rows[0][2:] == (True, 2, "ab|")
    assert rows[1] == ("abc  ", None, False, 3, "abc|")
    # psycopg reads a year and two months as 14 * 30 days, as PostgreSQL's binary form says.
    assert conn.execute("SELECT i::text FROM psy_fixed WHERE c = 'ab'").fetchone() == (
        "1 year 2 mons 3 days 04:05:06.000007",
    )
    with pytest.raises(psycopg.errors.StringDataRightTruncation, match=r"character\(5\)"):
        conn.execute("INSERT INTO psy_fixed (c) VALUES ('abcdef')")


def test_date_and_timestamp_text_parameters_read_as_postgresql_reads_them(conn):
    conn.execute("DROP TABLE IF EXISTS psy_times")
    conn.execute("CREATE TABLE psy_times (t timestamp, d date)")
    conn.execute("INSERT INTO psy_times VALUES ('2020-01-02 03:04:05', '2020-01-02')")
    # Strings, as a driver passes them, in forms PostgreSQL reads and ISO parsers do not.
    for text, expected in [
        ("2020-01-02", 1),
        ("2020-01-02 03:04", 1),
        ("Jan 3 2020", 0),
        ("epoch", 1),
    ]:
        got = conn.execute("SELECT count(*) FROM psy_times WHERE t > %s", (text,)).fetchone()
        assert got == (expected,), text
    assert conn.execute("SELECT %s::date", ("2 January 2020",)).fetchone() == (
        datetime.date(2020, 1, 2),
    )
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat):
        conn.execute("SELECT count(*) FROM psy_times WHERE d = %s", ("not a date",))


def test_drop_if_exists_says_what_it_skipped(conn):
    notices = []
    conn.add_notice_handler(lambda diag: notices.append((diag.severity, diag.message_primary)))
    conn.execute("DROP TABLE IF EXISTS psy_never_made")
    conn.execute("DROP SCHEMA IF EXISTS psy_no_schema")
    assert notices == [
        ("NOTICE", 'table "psy_never_made" does not exist, skipping'),
        ("NOTICE", 'schema "psy_no_schema" does not exist, skipping'),
    ]


@pytest.mark.parametrize("binary", [False, True])
def test_any_and_all_as_postgresql_answers_them(conn, binary):
    cur = conn.cursor(binary=binary)
    cur.execute("DROP TABLE IF EXISTS psy_quant")
    cur.execute("CREATE TABLE psy_quant (id int, name text)")
    cur.execute("INSERT INTO psy_quant VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    ids = lambda sql, *args: [r[0] for r in cur.execute(sql, args or None).fetchall()]
    # A list parameter, the usual way to pass a set of keys.
    assert ids("SELECT id FROM psy_quant WHERE id = ANY(%s) ORDER BY id", [1, 3]) == [1, 3]
    assert ids("SELECT id FROM psy_quant WHERE id <> ALL(%s) ORDER BY id", [1]) == [2, 3]
    # A NULL element makes a miss unknown, not false.
    assert cur.execute("SELECT %s = ANY(ARRAY[1, NULL])", (2,)).fetchone() == (None,)
    assert cur.execute("SELECT 5 <> ALL(ARRAY[1, NULL])").fetchone() == (None,)
    assert cur.execute("SELECT 5 <> ALL(ARRAY[5, NULL]), 1 = ANY(ARRAY[1, NULL])").fetchone() == (
        False,
        True,
    )
    # Subqueries, the same table inside and out, and in a select list.
    assert ids(
        "SELECT id FROM psy_quant WHERE id = ANY (SELECT id FROM psy_quant WHERE id > 1) ORDER BY id"
    ) == [2, 3]
    assert ids(
        "SELECT id FROM psy_quant WHERE id > ALL (SELECT id FROM psy_quant WHERE id < 3) ORDER BY id"
    ) == [3]
    assert ids(
        "SELECT id FROM psy_quant WHERE id <> ALL (SELECT id FROM psy_quant WHERE id < 3) ORDER BY id"
    ) == [3]
    assert cur.execute(
        "SELECT id, id >= ALL (SELECT id FROM psy_quant), id < ANY (SELECT 2 UNION SELECT NULL) "
        "FROM psy_quant ORDER BY id"
    ).fetchall() == [(1, False, True), (2, False, None), (3, True, None)]
    assert cur.execute(
        "SELECT 1 > ALL (SELECT id FROM psy_quant WHERE id > 5), 1 < ANY (SELECT id FROM psy_quant WHERE id > 5)"
    ).fetchone() == (True, False)


def test_copy_to_prints_values_as_postgresql_does(conn):
    # The expected bytes are PostgreSQL 15's for the same statements.
    def copied(sql):
        with conn.cursor().copy(sql) as copy:
            return b"".join(bytes(chunk) for chunk in copy)

    conn.execute("SET TIME ZONE 'UTC'")
    assert copied(
        "COPY (SELECT 1500::float8, 1.5::float4, '2020-01-01 00:00:00'::timestamp, "
        "'12:00:00.25'::time, NULL::int, E'a\\tb'::text, "
        "timestamptz '2020-01-01 00:00:00.5+00') TO STDOUT"
    ) == b"1500\t1.5\t2020-01-01 00:00:00\t12:00:00.25\t\\N\ta\\tb\t2020-01-01 00:00:00.5+00\n"
    conn.execute("SET TIME ZONE 'Asia/Kolkata'")
    assert copied(
        "COPY (SELECT timestamptz '2020-01-01 00:00:00.5+00', 1e20::float8, 'NaN'::float8) TO STDOUT"
    ) == b"2020-01-01 05:30:00.5+05:30\t1e+20\tNaN\n"
    assert copied("COPY (SELECT 1500::float8 AS a, 'x,y' AS b) TO STDOUT (FORMAT csv, HEADER)") == (
        b'a,b\n1500,"x,y"\n'
    )
    # A timestamptz is shown in the session's zone, whatever zone its column was written in.
    conn.execute("DROP TABLE IF EXISTS psy_zones")
    conn.execute("CREATE TABLE psy_zones (t timestamptz)")
    conn.execute("INSERT INTO psy_zones VALUES ('2020-01-01 00:00:00+00')")
    assert conn.execute("SELECT t::text FROM psy_zones").fetchone() == (
        "2020-01-01 05:30:00+05:30",
    )
    conn.execute("SET TIME ZONE 'UTC'")


def test_create_table_as_keeps_a_declared_not_null(conn):
    # DataFusion's form of CREATE TABLE ... AS with typed columns (PostgreSQL takes names only):
    # a declared NOT NULL holds for the rows it is made from and for later ones.
    conn.execute("DROP TABLE IF EXISTS psy_ctas")
    cur = conn.execute("CREATE TABLE psy_ctas (x int NOT NULL, y text) AS VALUES (1, 'a'), (2, 'b')")
    assert cur.statusmessage == "SELECT 2"
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("INSERT INTO psy_ctas VALUES (NULL, 'c')")
    assert conn.execute("SELECT count(*) FROM psy_ctas").fetchone() == (2,)
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("CREATE TABLE psy_ctas_null (x int NOT NULL) AS VALUES (1), (NULL)")
    # The failed statement leaves no table behind.
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM psy_ctas_null")


def test_a_primary_key_determines_the_other_columns(conn):
    conn.execute("DROP TABLE IF EXISTS psy_pk")
    conn.execute("CREATE TABLE psy_pk (id int PRIMARY KEY, name text, n int)")
    conn.execute("INSERT INTO psy_pk VALUES (1, 'a', 10), (2, 'b', 20)")
    # PostgreSQL takes the primary key as determining name: it need not be grouped by.
    assert conn.execute(
        "SELECT id, name, sum(n) FROM psy_pk GROUP BY id ORDER BY id"
    ).fetchall() == [(1, "a", 10), (2, "b", 20)]
    # A column that is not the key determines nothing.
    with pytest.raises(psycopg.errors.GroupingError):
        conn.execute("SELECT name, n FROM psy_pk GROUP BY name")
