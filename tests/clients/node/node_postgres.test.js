// node-postgres (pg) as applications use it: a pool, parameters of the common types, the
// result types node-postgres parses (int4 as a number, int8 as a string), transactions with
// savepoints, and errors with PostgreSQL's SQLSTATEs. SEMSQL_DSN is the server under test.
const test = require("node:test");
const assert = require("node:assert");
const { Pool } = require("pg");

const pool = new Pool({ connectionString: process.env.SEMSQL_NODE_URL, max: 4 });

test.after(() => pool.end());

test("parameters come back typed as PostgreSQL types them", async () => {
  const { rows, fields } = await pool.query(
    "SELECT $1::int * 2 AS doubled, $2::int8 AS big, $3::text AS word, $4::float8 AS ratio, $5::bool AS yes",
    [21, "9007199254740993", "héllo", 1.5, true],
  );
  assert.deepStrictEqual(rows[0], {
    doubled: 42,
    big: "9007199254740993",
    word: "héllo",
    ratio: 1.5,
    yes: true,
  });
  // int4 (23) for int4 * int4, as PostgreSQL.
  assert.strictEqual(fields[0].dataTypeID, 23);
  assert.strictEqual(fields[1].dataTypeID, 20);
});

test("NULL and untyped parameters", async () => {
  const { rows } = await pool.query("SELECT $1::int AS missing, $2 AS untyped", [null, "x"]);
  assert.deepStrictEqual(rows[0], { missing: null, untyped: "x" });
});

test("dates, timestamps and arrays", async () => {
  const { rows } = await pool.query(
    "SELECT $1::date AS day, $2::timestamptz AS at, ARRAY[1, 2, 3] AS items",
    ["2024-02-29", new Date(Date.UTC(2024, 1, 29, 12, 30, 0))],
  );
  assert.strictEqual(rows[0].at.toISOString(), "2024-02-29T12:30:00.000Z");
  assert.strictEqual(rows[0].day.getFullYear(), 2024);
  assert.deepStrictEqual(rows[0].items.map(Number), [1, 2, 3]);
});

test("a pool runs concurrent queries over its connections", async () => {
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => pool.query("SELECT $1::int + 1 AS next", [i])),
  );
  assert.deepStrictEqual(
    results.map((r) => r.rows[0].next),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

test("transactions and savepoints over one client", async () => {
  const client = await pool.connect();
  try {
    await client.query("DROP TABLE IF EXISTS node_items");
    await client.query("CREATE TABLE node_items (id INT, name TEXT)");
    await client.query("BEGIN");
    await client.query("INSERT INTO node_items VALUES ($1, $2)", [1, "kept"]);
    await client.query("SAVEPOINT before_second");
    await client.query("INSERT INTO node_items VALUES ($1, $2)", [2, "undone"]);
    await client.query("ROLLBACK TO SAVEPOINT before_second");
    await client.query("COMMIT");
    const { rows } = await client.query("SELECT id, name FROM node_items ORDER BY id");
    assert.deepStrictEqual(rows, [{ id: 1, name: "kept" }]);
  } finally {
    client.release();
  }
});

test("errors carry PostgreSQL's codes and the pool keeps working", async () => {
  await assert.rejects(pool.query("SELECT * FROM no_such_table"), (err) => {
    assert.strictEqual(err.code, "42P01");
    assert.match(err.message, /relation "no_such_table" does not exist/);
    return true;
  });
  await assert.rejects(pool.query("SELECT 1 / $1::int", [0]), (err) => err.code === "22012");
  const { rows } = await pool.query("SELECT 1 AS one");
  assert.deepStrictEqual(rows, [{ one: 1 }]);
});
