#!/usr/bin/env bash
# Fetches DataFusion 55.2's own sqllogictest files (the test_files/ folder of the
# datafusion-sqllogictest crate on crates.io, Apache-2.0), verified by checksum, for the
# conformance test that runs them over the wire (tests/integration/conformance.rs).
#
# Usage: scripts/fetch-datafusion-slt.sh [cache folder, default ~/.cache/semsql-datafusion-slt].
# Prints the folder that holds test_files/. Safe to run again: a verified copy is kept.
set -euo pipefail

cache="${1:-${SEMSQL_DATAFUSION_SLT_CACHE:-$HOME/.cache/semsql-datafusion-slt}}"
version="55.2.0"
crate_sha256="b270cea4d8c2b2c42773e60164204386fb97d7936736e5f126ac751b86d7dabe"
folder="$cache/datafusion-sqllogictest-$version"

if [ -f "$folder/.verified" ]; then
  echo "$folder"
  exit 0
fi

mkdir -p "$cache"
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
url="https://static.crates.io/crates/datafusion-sqllogictest/datafusion-sqllogictest-$version.crate"
if command -v curl >/dev/null 2>&1; then
  curl --silent --show-error --fail --location --retry 3 --output "$download/crate.tar.gz" "$url" >&2
else
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
    "$url" "$download/crate.tar.gz" >&2
fi
if ! echo "$crate_sha256  $download/crate.tar.gz" | sha256sum --check --status; then
  echo "datafusion-sqllogictest $version: checksum mismatch, not used" >&2
  exit 1
fi
rm -rf "$folder"
tar xzf "$download/crate.tar.gz" -C "$cache"
touch "$folder/.verified"
echo "$folder"
