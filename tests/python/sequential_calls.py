"""One MCP session over Python's http.client, calling hello.greet one call
after another for SECONDS; prints the count and latencies as JSON.

http.client sends a request's headers and body in separate writes and
reads an event stream as it comes, as Node's fetch does: against a server
that leaves Nagle's algorithm on, each call waits ~40 ms for a delayed ACK.
Run by tests/benches/http.rs; by hand: python3 sequential_calls.py URL SECONDS
"""

import http.client
import json
import sys
import time
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
seconds = float(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port)
base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def post(body, headers):
    conn.request("POST", url.path, json.dumps(body), {**base, **headers})
    response = conn.getresponse()
    return response, response.read()


init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "http.client", "version": "1"}}}
response, _ = post(init, {})
session = {"mcp-session-id": response.getheader("mcp-session-id"), "mcp-protocol-version": "2025-11-25"}
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)

call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "hello.greet", "arguments": {"name": "bench"}}}
latencies = []
start = time.perf_counter()
while time.perf_counter() - start < seconds:
    sent = time.perf_counter()
    response, body = post(call, session)
    assert response.status == 200 and b"Hello, bench!" in body, body
    latencies.append(time.perf_counter() - sent)
elapsed = time.perf_counter() - start
print(json.dumps({"elapsed": elapsed, "latencies": latencies}))
