"""A person's confirmation before db.execute, driven by the official MCP
Python SDK's elicitation callback (pinned in requirements.txt).

Run by tests/tests/all/confirm.rs; by hand:
    python confirm.py --moat target/debug/moat --config DIR/moat.toml \
        --stateless-config DIR2/moat.toml --db DIR/data/shop.sqlite

Over stdio and Streamable HTTP (with sessions and stateless), with the
initialize handshake ("legacy": the question comes as elicitation/create on
the call's stream) and 2026-07-28 ("auto": the question comes in an
InputRequiredResult and the SDK retries with the answer). For each: a
confirmed call deletes its order's items; a declined, cancelled or unchecked one
and one from a client without the elicitation capability delete nothing.
Over 2026-07-28 HTTP, an altered, re-targeted or replayed requestState is
refused; stateless replicas sharing confirm_state_key finish each other's
confirmations, once. Prints one line per scenario.
"""

import argparse
import asyncio
import sqlite3
import sys
import time

import mcp.types as types
from mcp import Client, StdioServerParameters
from serving import start_http

DELETE = "DELETE FROM order_items WHERE order_id = ?"


class Person:
    """An elicitation callback that answers as told and remembers what it saw."""

    def __init__(self, action, confirm=True, delay=0.0, until=None):
        self.action, self.confirm, self.delay, self.until = action, confirm, delay, until
        self.messages = []

    async def __call__(self, context, params):
        self.messages.append(params.message)
        assert params.requested_schema["properties"]["confirm"]["type"] == "boolean", params
        await asyncio.sleep(self.delay)
        if self.until is not None:
            await self.until.wait()
        if self.action == "accept":
            return types.ElicitResult(action="accept", content={"confirm": self.confirm})
        return types.ElicitResult(action=self.action)


def exists(db, order):
    # The scenarios run at once against one database, and a plugin's SQLite
    # has no file locks under WASI: a reader that meets another scenario's
    # journal mid-write sees it as hot, and a read-only connection cannot
    # roll it back. Such a read is tried again once the write is done.
    for attempt in range(20):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                query = "SELECT count(*) FROM order_items WHERE order_id = ?"
                return conn.execute(query, (order,)).fetchone()[0] > 0
        except sqlite3.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.1)


async def call(target, mode, person, order):
    """db.execute deleting `order`; returns (result, protocol)."""
    async with Client(target, mode=mode, elicitation_callback=person) as client:
        result = await client.call_tool("db.execute", {"sql": DELETE, "params": [order]})
        return result, client.protocol_version


def refused(result, words):
    text = result.content[0].text
    assert result.is_error, text
    assert text.startswith("not_confirmed: "), text
    assert words in text, text
    assert result.meta["moat/error"]["kind"] == "not_confirmed", result.meta


async def exercise(target, mode, db, first_order, stateless_legacy):
    order = first_order
    accept = Person("accept")
    result, protocol = await call(target, mode, accept, order)
    if stateless_legacy:
        refused(result, "without sessions")
        assert exists(db, order) and not accept.messages
        return protocol
    assert not result.is_error, result
    assert result.structured_content["changes"] >= 1, result
    assert not exists(db, order), "the confirmed call did not run"
    (message,) = accept.messages
    assert "`db.execute`" in message and f'"sql": "{DELETE}"' in message, message
    assert f'"params": [{order}]' in message, message

    # Arguments too long to show a person in full are not shown in part.
    order += 1
    long = Person("accept")
    async with Client(target, mode=mode, elicitation_callback=long) as client:
        padded = DELETE + " -- " + "x" * 9000
        result = await client.call_tool("db.execute", {"sql": padded, "params": [order]})
    refused(result, "to show")
    assert exists(db, order) and not long.messages

    for person, words in (
        (Person("decline"), "declined"),
        (Person("cancel"), "dismissed"),
        (Person("accept", confirm=False), "declined"),
        (None, "did not declare the elicitation capability"),
    ):
        order += 1
        result, _ = await call(target, mode, person, order)
        refused(result, words)
        assert exists(db, order), f"{words}: the tool ran"
        if person is not None:
            assert len(person.messages) == 1, person.messages
    return protocol


async def sealed_state_attacks(target, db, order):
    """Drive 2026-07-28's round trips by hand and attack the requestState."""
    async with Client(target, mode="auto", elicitation_callback=Person("accept")) as client:
        session = client.session
        args = {"sql": DELETE, "params": [order]}
        first = await session.call_tool("db.execute", args, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult), first
        (key,) = first.input_requests
        state = first.request_state
        yes = {key: {"action": "accept", "content": {"confirm": True}}}

        flipped = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
        attempts = (
            ("an altered state", args, flipped, "not valid"),
            ("other arguments", {"sql": DELETE, "params": [order + 1]}, state, "not valid"),
            ("other SQL", {"sql": "DROP TABLE orders", "params": []}, state, "not valid"),
        )
        for label, arguments, sealed, words in attempts:
            result = await session.call_tool("db.execute", arguments, input_responses=yes, request_state=sealed)
            refused(result, words)
            assert exists(db, order) and exists(db, order + 1), label

        result = await session.call_tool("db.execute", args, input_responses=yes, request_state=state)
        assert not result.is_error, result
        assert not exists(db, order)
        replay = await session.call_tool("db.execute", args, input_responses=yes, request_state=state)
        refused(replay, "already used")
        # No answer at all is no confirmation.
        fresh = await session.call_tool("db.execute", {"sql": DELETE, "params": [order + 1]}, allow_input_required=True)
        result = await session.call_tool(
            "db.execute", {"sql": DELETE, "params": [order + 1]}, input_responses={}, request_state=fresh.request_state
        )
        refused(result, "no answer")
        assert exists(db, order + 1)


async def replicas(first, second, stranger, db, order):
    """Stateless replicas sharing confirm_state_key: one asks, another
    finishes; a replica with another key cannot; the state runs once."""
    args = {"sql": DELETE, "params": [order]}
    async with Client(first, mode="auto", elicitation_callback=Person("accept")) as client:
        asked = await client.session.call_tool("db.execute", args, allow_input_required=True)
    (key,) = asked.input_requests
    yes = {key: {"action": "accept", "content": {"confirm": True}}}
    async with Client(stranger, mode="auto", elicitation_callback=Person("accept")) as client:
        result = await client.session.call_tool("db.execute", args, input_responses=yes, request_state=asked.request_state)
        refused(result, "not valid")
    assert exists(db, order)
    async with Client(second, mode="auto", elicitation_callback=Person("accept")) as client:
        result = await client.session.call_tool("db.execute", args, input_responses=yes, request_state=asked.request_state)
        assert not result.is_error, result
        assert not exists(db, order)
        again = await client.session.call_tool("db.execute", args, input_responses=yes, request_state=asked.request_state)
        refused(again, "already used")


async def waiting_holds_no_slot(target, db, order):
    """While people take their time, other calls run (the server allows one
    call at a time in this config); then every "yes" runs, one after another."""
    done = asyncio.Event()
    asking = []
    for i in range(3):
        # Each is asked before the next starts: a call holds its place
        # until its question goes out.
        person = Person("accept", until=done)
        asking.append(asyncio.create_task(call(target, "legacy", person, order + i)))
        while not person.messages:
            await asyncio.sleep(0.05)
    async with Client(target, mode="legacy") as client:
        count = await client.call_tool("db.query", {"sql": "SELECT count(*) AS n FROM customers"})
        assert not count.is_error, count
    done.set()
    for i, task in enumerate(asking):
        result, _ = await task
        assert not result.is_error, result
        assert not exists(db, order + i)


async def timeout(target, db, order):
    slow = Person("accept", delay=6)
    result, _ = await call(target, "legacy", slow, order)
    refused(result, "in time")
    assert exists(db, order)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--moat", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stateless-config", required=True)
    parser.add_argument("--replica-config", required=True)
    parser.add_argument("--stranger-config", required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()

    stdio = StdioServerParameters(command=args.moat, args=["serve", "--stdio", "--config", args.config])
    scenarios = [("stdio", lambda: (None, stdio))]
    for label, config in (("http", args.config), ("http-stateless", args.stateless_config)):
        scenarios.append((label, lambda config=config: start_http(args.moat, config)))

    failures, runs, order = 0, 0, 1
    for label, start in scenarios:
        for mode in ("legacy", "auto"):
            process, target = start()
            runs += 1
            try:
                stateless_legacy = label == "http-stateless" and mode == "legacy"
                protocol = await asyncio.wait_for(
                    exercise(target, mode, args.db, order, stateless_legacy), timeout=60
                )
                if label.startswith("http") and mode == "auto":
                    await asyncio.wait_for(sealed_state_attacks(target, args.db, order + 10), timeout=60)
                if label == "stdio" and mode == "legacy":
                    await asyncio.wait_for(timeout(target, args.db, order + 10), timeout=60)
                if label == "http" and mode == "legacy":
                    await asyncio.wait_for(waiting_holds_no_slot(target, args.db, order + 10), timeout=60)
                print(f"ok   {label:<15} mode={mode:<7} protocol={protocol}")
            except Exception as e:  # report every scenario, then fail
                failures += 1
                print(f"FAIL {label:<15} mode={mode:<7} {type(e).__name__}: {e!r}")
            finally:
                order += 20
                if process is not None:
                    process.terminate()
                    process.wait(timeout=15)
    runs += 1
    servers = [start_http(args.moat, c) for c in (args.stateless_config, args.replica_config, args.stranger_config)]
    try:
        # Orders 15 to 19 are left alone by the scenarios above.
        await asyncio.wait_for(replicas(*(url for _, url in servers), args.db, 15), timeout=60)
        print("ok   replicas")
    except Exception as e:
        failures += 1
        print(f"FAIL replicas {type(e).__name__}: {e!r}")
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=15)
    print(f"{runs - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
