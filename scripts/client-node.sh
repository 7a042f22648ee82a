#!/usr/bin/env bash
# Installs (once, and again when tests/clients/node/package.json changes) node-postgres for the
# client suite into a folder outside the clone; prints the path of its node_modules.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${SEMSQL_NODE_CLIENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/semsql-node-clients}"
package="$root/tests/clients/node/package.json"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are needed for the node-postgres suite (.ci/run installs them)" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules/pg" ] || ! cmp -s "$package" "$dir/package.json"; then
  echo "installing the node client suite's packages into $dir" >&2
  mkdir -p "$dir"
  cp "$package" "$dir/package.json"
  if ! (cd "$dir" && npm install --no-audit --no-fund --silent >&2); then
    rm -f "$dir/package.json"
    echo "could not install tests/clients/node/package.json from the npm registry" >&2
    exit 1
  fi
fi
echo "$dir/node_modules"
