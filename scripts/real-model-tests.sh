#!/usr/bin/env bash
# Runs the real-model tests (tests/integration/real_model.rs): builds llama-cpp-python once
# (about 5 minutes on 2 cores), fetches Qwen2.5-Coder-1.5B-Instruct once (1.1 GB, checked by
# sha256), serves it on 127.0.0.1:8089 and runs the ignored tests against it (about 7 minutes
# on 2 cores once the model is cached: 189 s + 248 s measured on 2026-12-02).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/semsql-target}"
port="${SEMSQL_REAL_MODEL_PORT:-8089}"
started=""
if ! curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then
    scripts/real-model.sh start 1.5b "$port"
    started=yes
fi
cleanup() { [ -n "$started" ] && scripts/real-model.sh stop "$port"; }
trap cleanup EXIT
SEMSQL_REAL_MODEL_URL="http://127.0.0.1:$port/v1" \
    cargo test --test integration real_model -- --ignored --test-threads=1
