"""A tiny OpenAI-compatible chat-completions server on loopback, for measuring agent loops.

It plays a deterministic planner in two dialects:
- JSON mode (response_format json_object): the origin sample's protocol
  ({"action": "use_tool" | "use_remote_tool" | "respond", ...}).
- Native tool calling (request has "tools"): returns tool_calls, then a final answer.
Latency per reply is FAKE_LLM_DELAY_MS (default 0). An API key containing "bad" gets a 401.
"stream": true gets server-sent events as OpenAI sends them (content word by word, spread over the
delay; tool calls in pieces; a usage chunk when stream_options.include_usage is set).
FAKE_LLM_FIXED_CALL_ID gives every tool call the same id, as some providers and local servers do.
Usage per reply: FAKE_LLM_PROMPT_TOKENS (default 10), FAKE_LLM_COMPLETION_TOKENS (default 5).
GET /hits returns how many completions were requested.
"""

import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DELAY = float(os.environ.get("FAKE_LLM_DELAY_MS", "0")) / 1000
HITS = {"n": 0}
USAGE = {
    "prompt_tokens": int(os.environ.get("FAKE_LLM_PROMPT_TOKENS", "10")),
    "completion_tokens": int(os.environ.get("FAKE_LLM_COMPLETION_TOKENS", "5")),
}
USAGE["total_tokens"] = USAGE["prompt_tokens"] + USAGE["completion_tokens"]


def plan(text):
    t = text.lower()
    m = re.search(r"calculate\s+([0-9\s\+\-\*/\.\(\)]+)$", text.strip(), re.I)
    if "create" in t and "jira" in t:
        return (
            "remote",
            "it",
            "create_jira_issue",
            {"project": "PROJ", "summary": text.split(":", 1)[-1].strip()[:200]},
        )
    if "roi" in t:
        return (
            "remote",
            "finance",
            "calculate_roi",
            {"principal": 10000, "rate": 0.05, "years": 10},
        )
    if "stock" in t:
        sym = re.findall(r"\b[A-Z]{2,5}\b", text)
        return ("remote", "finance", "stock_price", {"ticker": sym[-1] if sym else "AAPL"})
    if "ip" in t.split() or "ip address" in t:
        return ("remote", "it", "get_ip", {})
    if "jira" in t:
        return ("remote", "it", "jira_metrics", {"project": "PROJ"})
    if m:
        return ("local", "", "calculator", {"expression": m.group(1).strip()})
    return None


def reply(body):
    msgs = body.get("messages", [])
    last = msgs[-1] if msgs else {"role": "user", "content": ""}
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    tools = body.get("tools")
    if tools is not None:
        if last.get("role") == "tool":
            return {"role": "assistant", "content": f"Result: {content}"}
        p = plan(content)
        if not p:
            return {"role": "assistant", "content": f"You said: {content}"}
        names = {t["function"]["name"] for t in tools}
        name = p[2] if p[2] in names else next(iter(names))
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": os.environ.get("FAKE_LLM_FIXED_CALL_ID") or f"call_{HITS['n']}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(p[3])},
                }
            ],
        }
    # JSON mode (origin protocol)
    if content.startswith("Tool result:"):
        out = {"action": "respond", "message": content[len("Tool result:") :].strip()}
    else:
        p = plan(content)
        if not p:
            out = {"action": "respond", "message": f"You said: {content}"}
        elif p[0] == "local":
            out = {"action": "use_tool", "tool": p[2], "args": p[3]}
        else:
            out = {"action": "use_remote_tool", "namespace_id": p[1], "tool": p[2], "args": p[3]}
    return {"role": "assistant", "content": json.dumps(out)}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        HITS["n"] += 1
        auth = self.headers.get("authorization", "") + self.headers.get("x-api-key", "")
        if "bad" in auth:
            self._send(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return
        msg = reply(body)
        if body.get("stream"):
            self._stream(body, msg)
            return
        if DELAY:
            time.sleep(DELAY)
        resp = {
            "id": f"chatcmpl-{HITS['n']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": msg,
                    "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
                }
            ],
            "usage": USAGE,
        }
        self._send(200, resp)

    def do_GET(self):
        self._send(200, {"hits": HITS["n"]})

    def _stream(self, body, msg):
        base = {
            "id": f"chatcmpl-{HITS['n']}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
        }
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if msg.get("tool_calls"):
            for i, call in enumerate(msg["tool_calls"]):
                args = call["function"]["arguments"]
                deltas.append(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                half = len(args) // 2
                for piece in (args[:half], args[half:]):
                    deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        else:
            words = re.findall(r"\S+\s*", msg.get("content") or "")
            deltas += [{"content": w} for w in words]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        pause = DELAY / max(1, len(deltas) - 1)
        for i, delta in enumerate(deltas):
            if i and pause:
                time.sleep(pause)
            chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        self.wfile.write(
            b"data: "
            + json.dumps(
                dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])
            ).encode()
            + b"\n\n"
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(
                b"data: " + json.dumps(dict(base, choices=[], usage=USAGE)).encode() + b"\n\n"
            )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _send(self, status, resp):
        data = json.dumps(resp).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18080
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
