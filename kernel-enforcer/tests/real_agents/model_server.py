#!/usr/bin/env python3
"""A scripted model for driving real coding agents offline.

Speaks the two wire formats the agents use:

- the Anthropic Messages API (`POST /v1/messages`, streaming SSE or a JSON
  body), as Claude Code calls it through `ANTHROPIC_BASE_URL`;
- the OpenAI Responses API (`POST /v1/responses`, streaming SSE), as Codex
  calls it through a model provider's `base_url`.

Each turn of the conversation answers with the next tool call of the
script, one call per turn; after the last one it answers with text and
ends the turn. The turn is counted from the request itself (the number of
tool results the agent sends back), so the server keeps no conversation
state and auxiliary requests do not shift the script.

Every request is appended to `<log-dir>/requests.jsonl` (method, path and
the body as text) before it is answered: that is everything the agent
sent to the model, tool results included.

Usage: model_server.py --script FILE --log-dir DIR --port-file FILE
The script is a JSON list of steps `{"name": TOOL, "input": {...}}`; a
step with `"custom": true` is sent to Codex as a free-form tool call
(`custom_tool_call`, its `input` a string), as Codex's `apply_patch` is.
Runs until killed, or until --lifetime seconds have passed.
"""

import argparse
import http.server
import json
import os
import socketserver
import sys
import threading
import time

FINAL_TEXT = "All scripted steps are done."


def log_request(log_dir, method, path, body):
    line = json.dumps({"time": time.time(), "method": method, "path": path,
                       "body": body.decode("utf-8", "replace")})
    with LOCK:
        with open(os.path.join(log_dir, "requests.jsonl"), "a") as f:
            f.write(line + "\n")


LOCK = threading.Lock()


def sse(events):
    out = []
    for event in events:
        out.append("event: %s\ndata: %s\n\n" % (event["type"], json.dumps(event)))
    return "".join(out).encode()


# --- Anthropic Messages API ---------------------------------------------------

def anthropic_turn(request):
    """How many tool results the conversation already carries."""
    count = 0
    for message in request.get("messages", []):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            count += sum(1 for block in content
                         if isinstance(block, dict) and block.get("type") == "tool_result")
    return count


def anthropic_answer(request, script):
    """The content blocks and stop reason of the next answer."""
    tools = request.get("tools") or []
    turn = anthropic_turn(request)
    if tools and turn < len(script):
        step = script[turn]
        block = {"type": "tool_use", "id": "toolu_script_%02d" % turn,
                 "name": step["name"], "input": step["input"]}
        return [block], "tool_use"
    # Auxiliary requests (titles, summaries, checks) and the end of the
    # script: plain text.
    return [{"type": "text", "text": FINAL_TEXT}], "end_turn"


def anthropic_stream(request, blocks, stop_reason):
    model = request.get("model", "scripted")
    events = [{"type": "message_start", "message": {
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1}}}]
    for index, block in enumerate(blocks):
        if block["type"] == "tool_use":
            start = dict(block, input={})
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            events.append({"type": "content_block_delta", "index": index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        else:
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}})
            events.append({"type": "content_block_delta", "index": index, "delta": {
                "type": "text_delta", "text": block["text"]}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": 1}})
    events.append({"type": "message_stop"})
    return sse(events)


# --- OpenAI Responses API ------------------------------------------------------

def openai_turn(request):
    items = request.get("input")
    if not isinstance(items, list):
        return 0
    return sum(1 for item in items if isinstance(item, dict)
               and item.get("type") in ("function_call_output", "custom_tool_call_output"))


def openai_stream(request, script):
    turn = openai_turn(request)
    response_id = "resp_scripted_%02d" % turn
    events = [{"type": "response.created", "response": {"id": response_id}}]
    if request.get("tools") and turn < len(script):
        step = script[turn]
        call_id = "call_script_%02d" % turn
        if step.get("custom"):
            item = {"type": "custom_tool_call", "id": "ctc_%02d" % turn, "status": "completed",
                    "call_id": call_id, "name": step["name"], "input": step["input"]}
        else:
            item = {"type": "function_call", "id": "fc_%02d" % turn, "status": "completed",
                    "call_id": call_id, "name": step["name"],
                    "arguments": json.dumps(step["input"])}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    else:
        item = {"type": "message", "id": "msg_%02d" % turn, "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}]}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events.append({"type": "response.output_text.delta", "output_index": 0,
                       "content_index": 0, "item_id": item["id"], "delta": FINAL_TEXT})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    events.append({"type": "response.completed", "response": {
        "id": response_id, "status": "completed",
        "usage": {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 2}}})
    return sse(events)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("model-server: %s %s\n" % (self.command, self.path))

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "zstd" or self.headers.get("Content-Encoding") == "gzip":
            # Recorded as received; the tests search the decoded text only when
            # it can be decoded here.
            import gzip
            if self.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
        return data

    def send(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def do_GET(self):
        log_request(self.server.log_dir, "GET", self.path, b"")
        path = self.path.split("?")[0]
        if path.endswith("/models"):
            # Model listings: nothing to add to the agent's own list.
            return self.send(200, "application/json", b'{"data": [], "models": []}')
        self.send(404, "application/json", b'{"error": {"type": "not_found", "message": "offline"}}')

    def do_HEAD(self):
        self.send(404, "application/json", b"")

    def do_POST(self):
        data = self.body()
        log_request(self.server.log_dir, "POST", self.path, data)
        path = self.path.split("?")[0]
        try:
            request = json.loads(data or b"{}")
        except ValueError:
            request = {}
        script = self.server.script
        if path.endswith("/v1/messages/count_tokens"):
            return self.send(200, "application/json", b'{"input_tokens": 1}')
        if path.endswith("/v1/messages"):
            blocks, stop_reason = anthropic_answer(request, script)
            if request.get("stream"):
                return self.send(200, "text/event-stream", anthropic_stream(request, blocks, stop_reason))
            message = {"id": "msg_scripted", "type": "message", "role": "assistant",
                       "model": request.get("model", "scripted"), "content": blocks,
                       "stop_reason": stop_reason, "stop_sequence": None,
                       "usage": {"input_tokens": 1, "output_tokens": 1}}
            return self.send(200, "application/json", json.dumps(message).encode())
        if path.endswith("/responses"):
            return self.send(200, "text/event-stream", openai_stream(request, script))
        # Telemetry, event logging and anything else: refused at once.
        self.send(404, "application/json", b'{"error": {"type": "not_found", "message": "offline"}}')


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--lifetime", type=float, default=900)
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    with open(args.script) as f:
        server.script = json.load(f)
    server.log_dir = args.log_dir
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    # Stops by itself: a test that dies does not leave it behind for long.
    threading.Timer(args.lifetime, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
