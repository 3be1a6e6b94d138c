"""The official MCP Python SDK hears of a reload: a session (the
initialize handshake, "legacy") gets notifications/tools/list_changed
through its message handler, and a 2026-07-28 client ("auto") gets
ToolsListChanged events on a subscriptions/listen stream. Both list the
tools again after the news. Prints "ready" once both listen, then waits
for stdin to close (the test's reloads are done) and prints what each
heard. Run by tests/tests/all/reload.rs; by hand:
    python list_changed.py URL
"""

import asyncio
import sys

import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ToolsListChanged


async def main(url):
    heard = {"legacy": 0, "auto": 0}

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            heard["legacy"] += 1

    async with Client(url, mode="legacy", message_handler=on_message) as legacy, \
            Client(url, mode="auto") as modern:
        assert modern.protocol_version == "2026-07-28", modern.protocol_version
        async with modern.listen(tools_list_changed=True) as subscription:
            async def count_events():
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        heard["auto"] += 1

            counting = asyncio.ensure_future(count_events())
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            await asyncio.sleep(0.5)
            counting.cancel()
        # The news is followed by a fresh list, which still works.
        tools = sorted(t.name for t in (await legacy.list_tools()).tools)
        again = sorted(t.name for t in (await modern.list_tools()).tools)
        assert tools == again, (tools, again)
        print(f"heard legacy={heard['legacy']} auto={heard['auto']} tools={','.join(tools)}", flush=True)


asyncio.run(main(sys.argv[1]))
