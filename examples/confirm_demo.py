"""A terminal MCP client that asks you before Moat runs a destructive tool.

It launches Moat over stdio with the official MCP Python SDK, calls one tool,
and shows you Moat's question when Moat asks for a confirmation (MCP
elicitation); your answer decides whether the tool runs.

    pip install 'mcp==2.3.0'     # or use the venv the tests made: target/tmp/py-venv/bin/python
    python examples/confirm_demo.py --config examples/db.toml \
        db.execute '{"sql": "DROP TABLE orders", "params": []}'
"""

import argparse
import asyncio
import json

import mcp.types as types
from mcp import Client, StdioServerParameters


async def ask_the_person(context, params):
    print("\n--- the server asks ---")
    print(params.message)
    answer = input("Run it? [y/N] ").strip().lower()
    print("-----------------------\n")
    if answer in ("y", "yes"):
        return types.ElicitResult(action="accept", content={"confirm": True})
    return types.ElicitResult(action="decline")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--moat", default="target/debug/moat")
    parser.add_argument("--config", required=True)
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    parser.add_argument("tool")
    parser.add_argument("arguments")
    args = parser.parse_args()

    server = StdioServerParameters(command=args.moat, args=["serve", "--stdio", "--config", args.config])
    async with Client(server, mode=args.mode, elicitation_callback=ask_the_person) as client:
        print(f"> {args.tool} {args.arguments}   (MCP {client.protocol_version})")
        result = await client.call_tool(args.tool, json.loads(args.arguments))
        print(f"< isError={result.is_error}: {result.content[0].text}")


if __name__ == "__main__":
    asyncio.run(main())
