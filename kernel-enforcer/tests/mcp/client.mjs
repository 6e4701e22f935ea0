// An MCP client built on the official SDK: connects to the server command
// given after its first argument (through the gateway), lists the tools,
// makes the tool calls given as JSON, and prints one JSON line per result.
//
// usage: node client.mjs NODE_MODULES_DIR CALLS_JSON -- COMMAND ARGS...
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [modules, callsJson, separator, command, ...args] = process.argv.slice(2);
if (separator !== "--" || !command) {
  console.error("usage: node client.mjs NODE_MODULES_DIR CALLS_JSON -- COMMAND ARGS...");
  process.exit(2);
}
const sdk = (path) =>
  import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", path)).href);
const { Client } = await sdk("client/index.js");
const { StdioClientTransport } = await sdk("client/stdio.js");

const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
const client = new Client({ name: "gateway-test", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
console.log(JSON.stringify({ tools: tools.tools.map((t) => t.name).sort() }));
for (const call of JSON.parse(callsJson)) {
  try {
    const result = await client.callTool({ name: call.name, arguments: call.arguments });
    console.log(JSON.stringify({ call: call.name, result }));
  } catch (e) {
    console.log(JSON.stringify({ call: call.name, error: String(e) }));
  }
}
await client.close();
