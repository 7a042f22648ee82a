"""pgvector-python as its README uses it: `register_vector` (which looks the `vector` type up by
name in pg_type and then sends vectors in pgvector's binary form), numpy arrays in and out,
and the text form cast with `%s::vector`, over text and binary cursors."""

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS pgv_items")
        conn.execute("CREATE TABLE pgv_items (id int, embedding vector(3))")
        yield conn


@pytest.mark.parametrize("binary", [False, True])
def test_numpy_vectors_in_and_nearest_out(conn, binary):
    with conn.cursor(binary=binary) as cur:
        cur.execute(
            "INSERT INTO pgv_items (id, embedding) VALUES (%s, %s), (%s, %s), (%s, %s)",
            (1, np.array([1, 0, 0]), 2, np.array([0, 1, 0]), 3, np.array([0.9, 0.1, 0])),
        )
        rows = cur.execute(
            "SELECT id, embedding FROM pgv_items ORDER BY embedding <-> %s LIMIT 2",
            (np.array([1, 0, 0]),),
        ).fetchall()
    assert [row[0] for row in rows] == [1, 3]
    # register_vector loads `vector` results as pgvector.Vector (text) or numpy (binary).
    first = rows[0][1]
    values = first.to_numpy() if hasattr(first, "to_numpy") else np.asarray(first)
    assert np.allclose(values, [1, 0, 0])
    second = rows[1][1]
    values = second.to_numpy() if hasattr(second, "to_numpy") else np.asarray(second)
    assert np.allclose(values, [0.9, 0.1, 0])


@pytest.mark.parametrize("binary", [False, True])
def test_text_vectors_cast_with_vector(conn, binary):
    with conn.cursor(binary=binary) as cur:
        cur.execute("INSERT INTO pgv_items VALUES (%s, %s::vector)", (7, "[0.5, 0.5, 0]"))
        cur.execute("INSERT INTO pgv_items VALUES (%s, %s::vector)", (8, "[0, 0, 1]"))
        nearest = cur.execute(
            "SELECT id FROM pgv_items ORDER BY embedding <=> %s::vector LIMIT 1", ("[0, 0.1, 2]",)
        ).fetchone()
    assert nearest == (8,)


def test_vector_parameters_are_described_as_vector(conn):
    # What a driver learns when it describes the statement (asyncpg and pgjdbc do).
    conn.pgconn.prepare(b"pgv_describe", b"SELECT $1::vector <-> $2::vector, $3::int")
    described = conn.pgconn.describe_prepared(b"pgv_describe")
    assert [described.param_type(i) for i in range(described.nparams)] == [16385, 16385, 23]
    with conn.cursor() as cur:
        cur.execute("SELECT %s::vector AS v", ("[1,2,3]",), prepare=True)
        row = cur.fetchone()
        assert cur.description[0].type_code == 16385
    assert np.allclose(np.asarray(row[0].to_numpy() if hasattr(row[0], "to_numpy") else row[0]), [1, 2, 3])
    info = conn.execute(
        "SELECT typname, oid FROM pg_type WHERE oid = to_regtype('vector')"
    ).fetchall()
    assert info == [("vector", 16385)]


def test_wrong_dimensions_are_refused_with_pgvector_words(conn):
    with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2"):
        conn.execute("INSERT INTO pgv_items VALUES (%s, %s)", (9, np.array([1, 2])))
    # The connection keeps working.
    assert conn.execute("SELECT count(*) FROM pgv_items").fetchone() == (0,)
