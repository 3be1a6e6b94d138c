"""The official MCP Python SDK receives a plugin's progress reports and log
records while its call runs, in both negotiation modes: with the initialize
handshake ("legacy", logging/setLevel) and with 2026-07-28 ("auto", the
level in each request's _meta). The plugin floods both and quotes a secret
argument in every message: the client gets a bounded number, each with the
secret redacted. Run by tests/tests/all/notify.rs; by hand:
    python notifications.py URL
"""

import asyncio
import sys

from mcp import Client

SECRET = "sk-LIVE-7c1d"


async def exercise(url, mode):
    logs, progress = [], []

    async def on_log(params):
        logs.append(params)

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    extra = {"log_level": "info"} if mode == "auto" else {}
    async with Client(url, mode=mode, logging_callback=on_log, **extra) as client:
        if mode == "legacy":
            await client.set_logging_level("info")
        result = await client.call_tool(
            "testbed.chatter", {"count": 2000, "api_key": SECRET}, progress_callback=on_progress)
        assert not result.is_error and result.content[0].text == "chattered 2000 times", result
        await asyncio.sleep(0.2)
        values = [p[0] for p in progress]
        assert values and values == sorted(values), values
        assert 2000.0 in values, "the report reaching the total always goes"
        assert len(progress) <= 200, len(progress)
        assert 1 <= len(logs) <= 500, len(logs)
        texts = [str(l.data) for l in logs] + [p[2] or "" for p in progress]
        assert all(SECRET not in t for t in texts), texts[:3]
        assert any("[redacted]" in t for t in texts), texts[:3]
        # A call without a listener is told nothing, and still runs.
        before = len(progress)
        again = await client.call_tool("testbed.chatter", {"count": 3, "api_key": "x"})
        assert not again.is_error
        assert len(progress) == before
        print(f"ok notifications mode={mode} protocol={client.protocol_version} "
              f"progress={len(progress)} logs={len(logs)}")


async def main():
    for mode in ("legacy", "auto"):
        await exercise(sys.argv[1], mode)


asyncio.run(main())
