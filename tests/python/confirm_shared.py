"""Stateless replicas that share confirm_state_key and confirm_store (Redis):
a confirmation asked by one replica runs once in the whole deployment, and
with the store down it is refused (fails closed).

Run by tests/tests/all/confirm.rs:
    python confirm_shared.py --moat M --config A.toml --config B.toml --db DB --order N --phase shared|down
"""

import argparse
import asyncio
import sys

from confirm import DELETE, Person, exists, refused
from mcp import Client
from serving import start_http


async def ask(url, args):
    async with Client(url, mode="auto", elicitation_callback=Person("accept")) as client:
        asked = await client.session.call_tool("db.execute", args, allow_input_required=True)
    (key,) = asked.input_requests
    return asked.request_state, {key: {"action": "accept", "content": {"confirm": True}}}


async def answer(url, args, state, yes):
    async with Client(url, mode="auto", elicitation_callback=Person("accept")) as client:
        return await client.session.call_tool("db.execute", args, input_responses=yes, request_state=state)


async def shared(first, second, db, order):
    args = {"sql": DELETE, "params": [order]}
    state, yes = await ask(first, args)
    result = await answer(second, args, state, yes)
    assert not result.is_error, result
    assert not exists(db, order)
    for replica in (first, second):
        replay = await answer(replica, args, state, yes)
        refused(replay, "already used")


async def down(first, second, db, order):
    args = {"sql": DELETE, "params": [order]}
    state, yes = await ask(first, args)
    result = await answer(second, args, state, yes)
    refused(result, "cannot be reached")
    assert exists(db, order)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--moat", required=True)
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--order", type=int, required=True)
    parser.add_argument("--phase", choices=["shared", "down"], required=True)
    args = parser.parse_args()
    servers = [start_http(args.moat, config) for config in args.config]
    try:
        check = shared if args.phase == "shared" else down
        await asyncio.wait_for(check(*(url for _, url in servers), args.db, args.order), timeout=60)
        print(f"ok   {args.phase}")
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
