// A person's confirmation through the official MCP TypeScript SDK's client
// (its Streamable HTTP transport on Node's fetch): connects to URL, calls
// db.execute with SQL and PARAMS, and answers Moat's elicitation with ANSWER
// ("yes", "no", or "none" for a client without the capability). Prints one
// JSON line: {asked, result, protocol}.
//
//   node confirm.mjs URL ANSWER SQL PARAMS_JSON
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, answer, sql, params] = process.argv.slice(2);
const capabilities = answer === "none" ? {} : { elicitation: { form: {} } };
const client = new Client({ name: "ts-confirm", version: "1.0.0" }, { capabilities });
let asked = null;
if (answer !== "none") {
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    asked = request.params.message;
    return answer === "yes"
      ? { action: "accept", content: { confirm: true } }
      : { action: "decline" };
  });
}
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const result = await client.callTool({
  name: "db.execute",
  arguments: { sql, params: JSON.parse(params) },
});
console.log(JSON.stringify({ asked, result, protocol: transport.protocolVersion }));
await client.close();
