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
