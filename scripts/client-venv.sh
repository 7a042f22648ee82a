#!/usr/bin/env bash
# Makes (once, and again when tests/clients/requirements.txt changes) the virtualenv holding the
# real clients the client suite drives, outside the clone; prints the path of its python.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SEMSQL_CLIENTS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/semsql-clients-venv}"
requirements="$root/tests/clients/requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "installing the client suite's packages into $venv" >&2
  python3 -m venv "$venv" >&2
  if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2; then
    echo "could not install tests/clients/requirements.txt from PyPI (is the registry reachable?)" >&2
    exit 1
  fi
  cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
