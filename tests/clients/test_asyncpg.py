"""asyncpg: a pool of 4 running 20 concurrent queries (a pool resets each connection it takes
back, with pg_advisory_unlock_all among others), typed parameters and results."""

import asyncio

import asyncpg


def test_a_pool_runs_concurrent_queries(dsn):
    async def main():
        params = dict(part.split("=", 1) for part in dsn.split())
        pool = await asyncpg.create_pool(
            host=params["host"],
            port=int(params["port"]),
            user=params["user"],
            database=params["dbname"],
            min_size=4,
            max_size=4,
        )
        try:
            async def one(i):
                async with pool.acquire() as conn:
                    return await conn.fetchval("SELECT $1::int * 2", i)

            results = await asyncio.gather(*(one(i) for i in range(20)))
            assert results == [i * 2 for i in range(20)]
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT pg_try_advisory_lock(5)") is True
                row = await conn.fetchrow("SELECT $1::bigint AS a, $2::text AS b", 7, "x")
                assert (row["a"], row["b"]) == (7, "x")
        finally:
            await pool.close()

    asyncio.run(main())


def test_lists_as_array_parameters(dsn):
    async def main():
        params = dict(part.split("=", 1) for part in dsn.split())
        conn = await asyncpg.connect(
            host=params["host"], port=int(params["port"]), user=params["user"],
            database=params["dbname"],
        )
        try:
            await conn.execute("DROP TABLE IF EXISTS apg_keys")
            await conn.execute("CREATE TABLE apg_keys (id int, name text)")
            await conn.execute("INSERT INTO apg_keys VALUES (1, 'a'), (2, 'b'), (3, 'c')")
            # int4[] has no built-in codec in asyncpg: it is looked up with asyncpg's own
            # introspection query first.
            rows = await conn.fetch("SELECT name FROM apg_keys WHERE id = ANY($1) ORDER BY id", [1, 3])
            assert [r["name"] for r in rows] == ["a", "c"]
            rows = await conn.fetch("SELECT id FROM apg_keys WHERE name <> ALL($1) ORDER BY id", ["b"])
            assert [r["id"] for r in rows] == [1, 3]
            assert await conn.fetchval("SELECT $1 = ANY(ARRAY[1, NULL])", 2) is None
        finally:
            await conn.close()

    asyncio.run(main())
