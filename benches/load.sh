#!/usr/bin/env bash
# Load path: 200,000 rows (int, text, double) through COPY FROM STDIN (psql \copy) against the
# baseline of 200 INSERT statements of 1,000 rows each, measured in the same run against a
# release server on an empty data folder. Usage: bash benches/load.sh (needs psql, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/semsql-target}"
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
port=55433
"$CARGO_TARGET_DIR/release/semsql" serve --listen "127.0.0.1:$port" --data-dir "$work/data" 2>"$work/log" &
server=$!
for _ in $(seq 50); do psql -h 127.0.0.1 -p $port -qAtc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$work" <<'PY'
import random, sys
work = sys.argv[1]
r = random.Random(1)
rows = [(i, f"item number {i} {r.random():.6f}", round(r.random() * 100, 3)) for i in range(200000)]
with open(f"{work}/load.csv", "w") as f:
    f.writelines(f"{i},{label},{score}\n" for i, label, score in rows)
with open(f"{work}/load.sql", "w") as f:
    for start in range(0, len(rows), 1000):
        values = ",".join(f"({i},'{label}',{score})" for i, label, score in rows[start:start + 1000])
        f.write(f"INSERT INTO load_insert VALUES {values};\n")
PY
sql() { psql -h 127.0.0.1 -p $port -qAt "$@"; }
now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "import time; print(round(time.time() - $1, 2))"; }
sql -c "CREATE TABLE load_copy (id INT, label TEXT, score DOUBLE)" -c "CREATE TABLE load_insert (id INT, label TEXT, score DOUBLE)"
start=$(now); sql -c "\\copy load_copy from '$work/load.csv' csv"; copy=$(since "$start")
start=$(now); sql -f "$work/load.sql"; insert=$(since "$start")
echo "rows: copy $(sql -c 'SELECT count(*) FROM load_copy'), insert $(sql -c 'SELECT count(*) FROM load_insert')"
echo "COPY 200k rows: ${copy} s; INSERT 200 x 1000 rows (baseline): ${insert} s; COPY is $(python3 -c "print(round($insert / $copy, 1))")x faster"
