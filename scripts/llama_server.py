"""A small OpenAI-compatible chat server over llama-cpp-python, for semsql's real-model tests.

llama-cpp-python's own server refuses OpenAI's `response_format: {"type": "json_schema"}`
(HTTP 500, it knows only `json_object` with a `schema` inside), which is what semsql sends by
default and what llama.cpp's C++ `llama-server`, vLLM, Ollama and OpenAI accept. This server
takes the three forms semsql sends (`json_schema`, `json_object`, none) and turns a schema into
llama.cpp's grammar, so the model can only answer in the shape asked for.

One request at a time (one model, one context); the KV cache of the previous prompt is reused
for the common prefix, so the system message of a batch of requests is read once. A client
that goes away stops its generation (semsql's cancellation and statement_timeout drop requests).

    python llama_server.py --model FILE.gguf --alias NAME [--host 127.0.0.1] [--port 8089]
"""

import argparse
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llama_cpp import Llama


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


class Model:
    def __init__(self, args):
        self.alias = args.alias
        self.llama = Llama(
            model_path=args.model,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
        self.lock = threading.Lock()

    def complete(self, body, client_gone):
        """The chat completion for an OpenAI request body, as an OpenAI response body."""
        response_format = body.get("response_format")
        llama_format = None
        if response_format:
            kind = response_format.get("type")
            if kind == "json_schema":
                schema = response_format.get("json_schema", {}).get("schema")
                llama_format = {"type": "json_object", "schema": schema}
            elif kind == "json_object":
                llama_format = {"type": "json_object"}
            elif kind != "text":
                raise ValueError(f"unknown response_format type {kind!r}")
        with self.lock:
            started = time.time()
            chunks = self.llama.create_chat_completion(
                messages=body["messages"],
                temperature=float(body.get("temperature", 0.0)),
                max_tokens=body.get("max_tokens"),
                response_format=llama_format,
                seed=int(body.get("seed", 0)),
                stream=True,
            )
            content = []
            finish_reason = None
            for chunk in chunks:
                choice = chunk["choices"][0]
                content.append(choice["delta"].get("content") or "")
                finish_reason = choice.get("finish_reason") or finish_reason
                if client_gone():
                    # Ends the generator, which frees the context for the next request.
                    chunks.close()
                    return None
            text = "".join(content)
            prompt_tokens = len(self.llama.tokenize(
                "".join(m.get("content") or "" for m in body["messages"]).encode()))
            completion_tokens = len(self.llama.tokenize(text.encode(), add_bos=False))
            return {
                "id": f"chatcmpl-{int(started * 1000)}",
                "object": "chat.completion",
                "created": int(started),
                "model": self.alias,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason or "stop",
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }


def handler_for(model):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_request(self, code="-", size="-"):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def client_gone(self):
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self.reply(200, {"object": "list", "data": [
                    {"id": model.alias, "object": "model", "owned_by": "semsql-tests"}]})
            else:
                self.reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(raw)
                answer = model.complete(body, self.client_gone)
            except (ValueError, KeyError, TypeError) as error:
                self.reply(400, {"error": {"message": str(error), "type": "invalid_request_error"}})
                return
            if answer is not None:
                self.reply(200, answer)

    return Handler


def main():
    args = parse_args()
    model = Model(args)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(model))
    print(f"serving {args.alias} on http://{args.host}:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
