#!/usr/bin/env python3
"""A local peer speaking the OpenAI-compatible request/response shapes Hearth's intake uses.

Python standard library only. Started by the integration tests (tests/it/intake_model.rs) on a
free loopback port, which it prints as the first line of its standard output.

Endpoints:
  POST /v1/chat/completions     chat completion: the answer's message content is chosen by the
                                script (the first rule whose "contains" is in the request's
                                user message), else an empty proposal.
  POST /v1/audio/transcriptions multipart/form-data with "file" and "model": {"text": ...} from
                                the script.
  PUT  /_script                 the test's script (JSON, below).
  GET  /_requests               every request received so far: method, path, headers, body
                                (text: UTF-8 with replacement characters).

Script: {"chat": [{"contains": "...", "content": "...", "delay_ms": 0, "status": 200}],
         "transcription": {"text": "...", "delay_ms": 0, "status": 200}}
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"script": {"chat": [], "transcription": {"text": ""}}, "requests": []}
EMPTY = json.dumps({"english": None, "findings": [], "red_flags": [], "urgency": None})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path == "/_requests":
            with LOCK:
                self.reply(200, STATE["requests"])
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_PUT(self):
        body = self.read_body()
        if self.path == "/_script":
            with LOCK:
                STATE["script"] = json.loads(body)
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.read_body()
        with LOCK:
            STATE["requests"].append({
                "method": "POST",
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", errors="replace"),
            })
            script = STATE["script"]
        if self.path == "/v1/chat/completions":
            self.chat(body, script.get("chat", []))
        elif self.path == "/v1/audio/transcriptions":
            self.transcription(body, script.get("transcription", {}))
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def chat(self, body, rules):
        try:
            request = json.loads(body)
            user = next(m["content"] for m in request["messages"] if m["role"] == "user")
            model = request["model"]
        except (ValueError, KeyError, StopIteration):
            self.reply(400, {"error": {"message": "not a chat completion request"}})
            return
        rule = next((r for r in rules if r.get("contains", "") in user), {})
        time.sleep(rule.get("delay_ms", 0) / 1000)
        status = rule.get("status", 200)
        if status != 200:
            self.reply(status, {"error": {"message": "scripted failure"}})
            return
        self.reply(200, {
            "id": "chatcmpl-peer",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": rule.get("content", EMPTY)}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })

    def transcription(self, body, rule):
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data") or b'name="file"' not in body \
                or b'name="model"' not in body:
            self.reply(400, {"error": {"message": "expected multipart/form-data with file and model"}})
            return
        time.sleep(rule.get("delay_ms", 0) / 1000)
        status = rule.get("status", 200)
        if status != 200:
            self.reply(status, {"error": {"message": "scripted failure"}})
            return
        self.reply(200, {"text": rule.get("text", "")})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    # Ends when the test closes our standard input (or kills us).
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
