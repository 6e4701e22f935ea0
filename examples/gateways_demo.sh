#!/usr/bin/env bash
# Governing agents that are not Rust programs: one running enforcer
# (`kernel-enforcer listen`), asked by `ask` (any language, JSON), `exec`
# (brokered execution), the Claude Code and Codex hook adapters, and the
# MCP gateway in front of the official filesystem server (when node and
# npm are available).
#
# Run from the repository root:  bash examples/gateways_demo.sh
# (builds the enforcer first unless KERNEL_ENFORCER names a binary).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${KERNEL_ENFORCER:-}" ]]; then
  cargo build -q -p kernel-enforcer --no-default-features --bin kernel-enforcer
  KERNEL_ENFORCER="$PWD/target/debug/kernel-enforcer"
fi
ke() { "$KERNEL_ENFORCER" "$@"; }
policy="$PWD/examples/policies/agent.cedar"
demo="$(mktemp -d)"
trap 'kill "$listener" 2>/dev/null || true; rm -rf "$demo"' EXIT
mkdir -p "$demo/project"
echo "hello" > "$demo/project/README.md"
export AGENT_KERNEL_ENDPOINT="$demo/kernel.sock"

"$KERNEL_ENFORCER" listen --policy "$policy" --policy "$PWD/examples/policies/mcp.cedar" --workspace "$demo/project" \
  --evidence "$demo/evidence.log" --socket "$AGENT_KERNEL_ENDPOINT" >/dev/null 2>&1 &
listener=$!
for _ in $(seq 100); do [[ -S "$AGENT_KERNEL_ENDPOINT" ]] && break; sleep 0.1; done
cd "$demo/project"

show() { echo "\$ kernel-enforcer $*"; ke "$@" || echo "(exit status $?)"; echo; }

echo "== ask: one JSON action, the verified receipt back =="
echo '{"version":1,"action":{"kind":"file_read","path":"README.md"}}' > read.json
show ask --action-json read.json
echo '{"version":1,"action":{"kind":"exec","program":"rm","args":["-rf","."]}}' > rm.json
show ask --action-json rm.json

echo "== exec: the enforcer's broker runs the program, if allowed =="
show exec -- ls
show exec -- rm -rf .

echo "== hook claude-code: a PreToolUse payload on standard input =="
hook() {
  echo "\$ echo '$2' | kernel-enforcer hook $1"
  if echo "$2" | ke hook "$1"; then echo "(exit status 0)"; else echo "(exit status $?)"; fi
  echo
}
hook claude-code "{\"hook_event_name\":\"PreToolUse\",\"cwd\":\"$demo/project\",\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls -la\"}}"
hook claude-code "{\"hook_event_name\":\"PreToolUse\",\"cwd\":\"$demo/project\",\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls && rm -rf .\"}}"
hook claude-code "{\"hook_event_name\":\"PreToolUse\",\"cwd\":\"$demo/project\",\"tool_name\":\"Grep\",\"tool_input\":{\"pattern\":\"KEY\",\"path\":\"/home/dev/.ssh\"}}"
hook codex "{\"hook_event_name\":\"PreToolUse\",\"cwd\":\"$demo/project\",\"tool_name\":\"apply_patch\",\"tool_input\":{\"command\":\"*** Begin Patch\\n*** Add File: notes.md\\n+hi\\n*** Add File: .env\\n+TOKEN=x\\n*** End Patch\"}}"

if command -v node >/dev/null && command -v npm >/dev/null; then
  echo "== mcp-proxy: the official MCP client and filesystem server =="
  npmdir="$demo/node"
  mkdir -p "$npmdir"
  cp "$OLDPWD/kernel-enforcer/tests/mcp/package.json" "$npmdir/"
  (cd "$npmdir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  calls="[{\"name\":\"read_text_file\",\"arguments\":{\"path\":\"$demo/project/README.md\"}},{\"name\":\"write_file\",\"arguments\":{\"path\":\"$demo/project/notes.txt\",\"content\":\"x\"}}]"
  node "$OLDPWD/kernel-enforcer/tests/mcp/client.mjs" "$npmdir/node_modules" "$calls" -- \
    "$KERNEL_ENFORCER" mcp-proxy --socket "$AGENT_KERNEL_ENDPOINT" -- \
    node "$npmdir/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js" "$demo/project" \
    2>/dev/null
  echo "notes.txt exists: $([[ -e notes.txt ]] && echo yes || echo no)"
  echo
else
  echo "SKIPPED: the MCP gateway demo needs node and npm"
fi

echo "== the evidence, checked with public keys only =="
show audit verify "$demo/evidence.log"
