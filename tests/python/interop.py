"""Drives Moat with the official MCP Python SDK (pinned in requirements.txt).

Run by tests/tests/all/python_interop.rs; by hand:
    python interop.py --moat target/debug/moat --config DIR/moat.toml \
        --stateless-config DIR2/moat.toml

Over stdio and Streamable HTTP (stateful and stateless), with the
initialize handshake ("legacy") and with the SDK's automatic negotiation
("auto", which probes server/discover for 2026-07-28): list the tools, call
hello and files tools, and get an isError result from a testbed call that
times out. Prints one line per scenario with the negotiated version.
"""

import argparse
import asyncio
import sys

from mcp import Client, StdioServerParameters
from serving import start_http


async def exercise(target, mode):
    async with Client(target, mode=mode) as client:
        tools = await client.list_tools()
        names = {tool.name for tool in tools.tools}
        for expected in ("hello.greet", "files.read", "files.search", "testbed.sleep"):
            assert expected in names, f"{expected} not listed: {sorted(names)}"

        greet = await client.call_tool("hello.greet", {"name": "python"})
        assert not greet.is_error, greet
        assert greet.content[0].text == "Hello, python!", greet

        read = await client.call_tool("files.read", {"path": "a.txt"})
        assert not read.is_error, read
        assert read.content[0].text == "alpha", read

        search = await client.call_tool("files.search", {"query": "alp"})
        assert search.structured_content["matches"][0]["path"] == "a.txt", search

        slow = await client.call_tool("testbed.sleep", {"ms": 10000})
        assert slow.is_error, slow
        assert slow.content[0].text.startswith("timed_out: "), slow

        again = await client.call_tool("hello.echo", {"message": "still serving"})
        assert again.content[0].text == "still serving", again
        return client.protocol_version


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--moat", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stateless-config", required=True)
    args = parser.parse_args()

    failures = 0
    stdio = StdioServerParameters(command=args.moat, args=["serve", "--stdio", "--config", args.config])
    scenarios = [("stdio", lambda: (None, stdio))]
    for label, config in (("http", args.config), ("http-stateless", args.stateless_config)):
        scenarios.append((label, lambda config=config: start_http(args.moat, config)))

    for label, start in scenarios:
        for mode in ("legacy", "auto"):
            process, target = start()
            try:
                version = await asyncio.wait_for(exercise(target, mode), timeout=60)
                print(f"ok   {label:<15} mode={mode:<7} protocol={version}")
            except Exception as e:  # report every scenario, then fail
                failures += 1
                print(f"FAIL {label:<15} mode={mode:<7} {type(e).__name__}: {e}")
            finally:
                if process is not None:
                    process.terminate()
                    process.wait(timeout=15)
    print(f"{6 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
