"""Drives Superset's REST API against semsql (see run.sh) and checks the numbers."""

import os
import sys
import time

import psycopg2
import requests

SEMSQL = f"postgresql+psycopg2://semsql@127.0.0.1:{os.environ['SEMSQL_PORT']}/semsql"
BASE = f"http://127.0.0.1:{os.environ['SUPERSET_PORT']}"


def wait_for(url, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    sys.exit(f"{url} did not answer within {seconds} s")


def main():
    # The data: three days, two regions.
    conn = psycopg2.connect(host="127.0.0.1", port=os.environ["SEMSQL_PORT"], user="semsql", dbname="semsql")
    conn.autocommit = True
    cur = conn.cursor()
    # A key and an HNSW index, so that Superset's reflection of the dataset reads both.
    cur.execute(
        "CREATE TABLE sales (id INT PRIMARY KEY, sold_at TIMESTAMP, region TEXT, amount INT, e vector(2))"
    )
    cur.execute("CREATE INDEX sales_e ON sales USING hnsw (e vector_l2_ops)")
    rows = []
    for day in range(1, 4):
        for hour in (9, 15):
            for region, base in (("north", 10), ("south", 3)):
                amount = base * day + hour
                rows.append(
                    (len(rows) + 1, f"2024-03-0{day} {hour:02d}:30:00", region, amount, f"[{day},{amount}]")
                )
    cur.executemany("INSERT INTO sales VALUES (%s, %s, %s, %s, %s)", rows)
    cur.execute(
        "SELECT date_trunc('day', sold_at), region, sum(amount) FROM sales GROUP BY 1, 2 ORDER BY 1, 2"
    )
    expected = {(str(day)[:10], region): total for day, region, total in cur.fetchall()}
    print("expected sums:", expected)

    wait_for(f"{BASE}/health")
    session = requests.Session()
    token = session.post(
        f"{BASE}/api/v1/security/login",
        json={"username": "admin", "password": "admin", "provider": "db", "refresh": True},
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    csrf = session.get(f"{BASE}/api/v1/security/csrf_token/").json()["result"]
    session.headers["X-CSRFToken"] = csrf
    session.headers["Referer"] = BASE

    created = session.post(
        f"{BASE}/api/v1/database/",
        json={"database_name": "semsql", "sqlalchemy_uri": SEMSQL, "expose_in_sqllab": True},
    )
    assert created.status_code == 201, created.text
    database = created.json()["id"]
    print("database added:", database)

    dataset = session.post(
        f"{BASE}/api/v1/dataset/",
        json={"database": database, "schema": "public", "table_name": "sales"},
    )
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    columns = session.get(f"{BASE}/api/v1/dataset/{dataset_id}").json()["result"]["columns"]
    print("dataset columns:", sorted((c["column_name"], c["type"], c["is_dttm"]) for c in columns))
    assert {c["column_name"] for c in columns} == {"id", "sold_at", "region", "amount", "e"}

    chart = session.post(
        f"{BASE}/api/v1/chart/data",
        json={
            "datasource": {"id": dataset_id, "type": "table"},
            "force": True,
            "queries": [
                {
                    "columns": [
                        {
                            "timeGrain": "P1D",
                            "columnType": "BASE_AXIS",
                            "sqlExpression": "sold_at",
                            "label": "sold_at",
                            "expressionType": "SQL",
                        },
                        "region",
                    ],
                    "metrics": [
                        {
                            "expressionType": "SIMPLE",
                            "column": {"column_name": "amount"},
                            "aggregate": "SUM",
                            "label": "total",
                        }
                    ],
                    "orderby": [["total", False]],
                    "row_limit": 100,
                }
            ],
            "result_format": "json",
            "result_type": "full",
        },
    )
    assert chart.status_code == 200, chart.text
    result = chart.json()["result"][0]
    print("chart query:", result["query"])
    got = {}
    for row in result["data"]:
        day = time.strftime("%Y-%m-%d", time.gmtime(row["sold_at"] / 1000))
        got[(day, row["region"])] = row["total"]
    print("chart sums:", got)
    assert got == expected, f"{got} != {expected}"

    lab = session.post(
        f"{BASE}/api/v1/sqllab/execute/",
        json={
            "database_id": database,
            "sql": "SELECT region, count(*) AS sold, sum(amount) AS total FROM sales GROUP BY region ORDER BY region",
            "runAsync": False,
            "schema": "public",
        },
    )
    assert lab.status_code == 200, lab.text
    data = lab.json()["data"]
    print("SQL Lab:", data)
    assert data == [
        {"region": "north", "sold": 6, "total": sum(t for (d, r), t in expected.items() if r == "north")},
        {"region": "south", "sold": 6, "total": sum(t for (d, r), t in expected.items() if r == "south")},
    ], data
    print("superset: all checks passed")


if __name__ == "__main__":
    main()
