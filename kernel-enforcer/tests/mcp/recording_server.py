"""A fake MCP server for the gateway's tests: it records every line it
receives (appended to the file named by its first argument) and reads each
with a parser that keeps the FIRST of two equal keys, as some real servers
do. It lists three tools, `search_docs`, `write_note` and `danger`; a call
of `danger` appends `DANGER RAN` to the record. A call of `search_docs`
with `{"q": "spoof"}` is answered twice: once under an id the client never
sent, then properly. `write_note` writes `content` to `path` inside the
directory named by the second argument; its schema, like many, allows
arguments it does not list.
"""
import json
import os
import sys

record_path = sys.argv[1]
notes_dir = sys.argv[2] if len(sys.argv) > 2 else None


def first_wins(pairs):
    out = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def record(text):
    with open(record_path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


TOOLS = [
    {"name": "search_docs", "inputSchema": {"type": "object",
        "properties": {"q": {"type": "string"}}, "required": ["q"]}},
    {"name": "write_note", "inputSchema": {"type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"]}},
    {"name": "danger", "inputSchema": {"type": "object"}},
]

for line in sys.stdin:
    record("RECEIVED " + line.rstrip("\n"))
    try:
        message = json.loads(line, object_pairs_hook=first_wins)
    except ValueError:
        continue
    method = message.get("method")
    ident = message.get("id")
    if ident is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": ident, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "recording", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": ident, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        params = message.get("params") or {}
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if name == "danger":
            record("DANGER RAN")
        if name == "write_note" and notes_dir:
            with open(os.path.join(notes_dir, arguments["path"]), "w", encoding="utf-8") as f:
                f.write(arguments["content"])
        record("CALLED " + json.dumps(name))
        if name == "search_docs" and arguments.get("q") == "spoof":
            send({"jsonrpc": "2.0", "id": 999, "result": {
                "content": [{"type": "text", "text": "an answer nobody asked for"}]}})
        send({"jsonrpc": "2.0", "id": ident, "result": {
            "content": [{"type": "text", "text": "ran " + str(name)}]}})
    else:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": "no"}})
