"""A tiny local OpenAI-compatible chat server with scripted replies.

It answers ``POST /v1/chat/completions`` over real HTTP on 127.0.0.1, so the
generator can be run end to end without an API key (Chapter 2, tests). Replies
are built from the request's persona/scenario/structure lines, so every grid
cell gets a distinct sentence. ``faults`` injects failures in order, e.g.
``["429", "malformed", "500"]``, to show the generator's retries.
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["ScriptedChatServer"]


def _field(text: str, name: str) -> str:
    m = re.search(rf"^{name}: (.+)$", text, flags=re.M)
    return m.group(1).strip() if m else ""


def scripted_reply(user: str) -> str:
    """The JSON text the scripted model answers to a generator prompt."""
    if "Answer:" in user and "Value:" in user:  # the LLM judge's rubric
        value, resp = _field(user, "Value").lower(), _field(user, "Answer").lower()
        words = set(re.findall(r"[a-z]+", resp))
        cue = {"benevolence": {"help", "helped", "family", "friend", "friends", "care"}}.get(
            value, set(re.findall(r"[a-z]+", value)))
        return json.dumps({"reflects_value": "yes" if words & cue else "no",
                           "fluent": "no" if len(words) < 3 else "yes"})
    if "Sentence:" in user:  # stage 2: a minimal edit that drops the value
        s = _field(user, "Sentence")
        return json.dumps({"negative": s.replace("gladly stayed to help", "quickly went home to rest")})
    persona, scenario = _field(user, "Persona"), _field(user, "Scenario")
    structure = _field(user, "Structure")
    return json.dumps({"positive": f"As a {persona}, during {scenario}, I gladly stayed to help "
                                   f"({structure})."})


class ScriptedChatServer:
    """Context manager running the server in a thread; ``.base_url`` ends in ``/v1``."""

    def __init__(self, faults=(), delay: float = 0.0, port: int = 0):
        self.faults = list(faults)
        self.delay = delay
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test and notebook output clean
                pass

            def _send(self, code: int, body: str):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                req = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, json.dumps({"error": {"message": "not found"}}))
                with server._lock:
                    server.requests += 1
                    fault = server.faults.pop(0) if server.faults else None
                if server.delay:
                    time.sleep(server.delay)
                if fault in ("429", "500"):
                    return self._send(int(fault), json.dumps(
                        {"error": {"message": f"scripted {fault}", "type": "scripted"}}))
                user = next((m["content"] for m in req.get("messages", [])
                             if m.get("role") == "user"), "")
                content = "{not json" if fault == "malformed" else scripted_reply(user)
                self._send(200, json.dumps({
                    "id": f"chatcmpl-{server.requests}", "object": "chat.completion",
                    "created": int(time.time()), "model": req.get("model", "scripted"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(user.split()),
                              "completion_tokens": len(content.split()),
                              "total_tokens": len(user.split()) + len(content.split())}}))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self):
        """Run in the foreground (``python -m conva_nb.local_server``)."""
        self._httpd.serve_forever()


if __name__ == "__main__":
    srv = ScriptedChatServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
    print(srv.base_url, flush=True)
    srv.serve_forever()
