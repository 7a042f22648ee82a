#!/usr/bin/env bash
# Apache Superset 6.1.0 (from PyPI) against semsql, as a BI user drives it: adds semsql as a
# database, makes a dataset on a table, runs a chart-data query (SUM by day of a timestamp
# column, by a text column) and a SQL Lab query through Superset's REST API, and checks the
# numbers against the same sums computed over psycopg. Not part of `cargo test` (installing
# Superset takes minutes); run by hand:
#
#   cargo build && tests/superset/run.sh
#
# SEMSQL_BIN picks the server binary (default: the debug build under CARGO_TARGET_DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${SEMSQL_SUPERSET_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/semsql-superset-venv}"
bin="${SEMSQL_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/semsql}"
work="$(mktemp -d)"
semsql_port="${SEMSQL_PORT:-55433}"
superset_port="${SUPERSET_PORT:-58088}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

started=$(date +%s)
if [ ! -x "$venv/bin/superset" ]; then
  echo "installing apache-superset 6.1.0 into $venv (a few minutes)"
  python3 -m venv "$venv"
  # Superset 6.1.0 needs rich and cachetools it does not declare, and Flask-Caching 2.3.1.
  "$venv/bin/pip" install -q --disable-pip-version-check "apache-superset==6.1.0" rich cachetools \
    "Flask-Caching==2.3.1" psycopg2-binary requests
fi

"$bin" serve --data-dir "$work/semsql" --listen "127.0.0.1:$semsql_port" >"$work/semsql.log" 2>&1 &
pids+=($!)

cat >"$work/superset_config.py" <<PY
SECRET_KEY = "semsql-superset-check-$(date +%s)"
SQLALCHEMY_DATABASE_URI = "sqlite:///$work/superset.db"
WTF_CSRF_ENABLED = False
TALISMAN_ENABLED = False
PREVENT_UNSAFE_DB_CONNECTIONS = False
PY
export SUPERSET_CONFIG_PATH="$work/superset_config.py" FLASK_APP=superset
"$venv/bin/superset" db upgrade >"$work/upgrade.log" 2>&1
"$venv/bin/superset" fab create-admin --username admin --firstname a --lastname b \
  --email admin@example.com --password admin >"$work/admin.log" 2>&1
"$venv/bin/superset" init >"$work/init.log" 2>&1
"$venv/bin/superset" run -h 127.0.0.1 -p "$superset_port" --with-threads >"$work/superset.log" 2>&1 &
pids+=($!)

set +e
SEMSQL_PORT="$semsql_port" SUPERSET_PORT="$superset_port" "$venv/bin/python" "$root/tests/superset/check.py"
status=$?
set -e
if [ $status -ne 0 ]; then
  echo "--- superset log (tail)"; tail -40 "$work/superset.log"
  echo "--- semsql log (tail)"; tail -20 "$work/semsql.log"
fi
echo "took $(( $(date +%s) - started )) s"
exit $status
