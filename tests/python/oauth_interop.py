"""Drives Moat, protected by a third-party OpenID Provider, with the official
MCP Python SDK's client-credentials OAuth provider.

Run by tests/tests/all/oauth_interop.rs; by hand, with Moat and the provider
(tests/node/provider.mjs) already running:
    python oauth_interop.py --url http://127.0.0.1:PORT/mcp \
        --issuer http://127.0.0.1:PORT2 --other-resource http://127.0.0.1:PORT/other

The SDK knows only Moat's URL and the client's credentials. It must get a
401, find the authorization server through Moat's RFC 9728 metadata and
the provider's discovery document, request a token with `resource` set to
Moat's URL and the scope Moat's 401 names (`tools:read`), and list and
call tools. Calling a tool that needs `tools:write` gets a 403
insufficient_scope naming it; the SDK asks the provider for the wider
token (step-up) and the call succeeds. With a token for fewer scopes, Moat
lists fewer tools and refuses the others with 403; a token the provider
issued for another resource is refused with 401.
"""

import argparse
import asyncio
import json
import sys
from urllib.parse import parse_qs

import httpx2
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CLIENT_ID = "moat-interop"
CLIENT_SECRET = "interop-secret-0123456789"


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def discover_and_call(url, issuer):
    """The SDK's own flow, recording every HTTP exchange it makes."""
    exchanges = []

    async def record(response):
        request = response.request
        body = parse_qs(request.content.decode()) if request.method == "POST" and b"grant_type" in request.content else {}
        exchanges.append((request.method, str(request.url), response.status_code, body))

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryStorage(),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=issuer,
    )
    http = create_mcp_http_client(auth=provider)
    http.event_hooks["response"].append(record)
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert names == ["hello.echo", "hello.greet"], f"tools:read lists hello only: {names}"
        greet = await client.call_tool("hello.greet", {"name": "oauth"})
        assert not greet.is_error and greet.content[0].text == "Hello, oauth!", greet
        # 403 naming tools:write, a wider token, and the call goes through.
        read = await client.call_tool("files.read", {"path": "a.txt"})
        assert not read.is_error and read.content[0].text == "alpha", read
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert names == ["files.list", "files.read", "files.search", "files.select",
                         "hello.echo", "hello.greet"], f"the wider token lists every tool: {names}"

    statuses = [(method, status) for method, u, status, _ in exchanges if u == url]
    assert statuses[0] == ("POST", 401), f"the first request is refused: {statuses}"
    metadata = [u for _, u, status, _ in exchanges if "/.well-known/oauth-protected-resource" in u and status == 200]
    assert metadata, f"the resource metadata was fetched: {exchanges}"
    discovery = [u for _, u, status, _ in exchanges if u.startswith(issuer + "/.well-known/") and status == 200]
    assert discovery, f"the provider's metadata was fetched: {exchanges}"
    token_requests = [body for _, _, status, body in exchanges if body.get("grant_type") == ["client_credentials"]]
    assert len(token_requests) == 2, f"a token, then a wider one: {exchanges}"
    for request in token_requests:
        assert request["resource"] == [url], f"resource indicator: {request}"
    assert token_requests[0]["scope"] == ["tools:read"], f"the 401's scope: {token_requests[0]}"
    assert ("POST", 403) in statuses, f"files.read was refused first: {statuses}"
    print(f"discovered: {metadata[0]} -> {discovery[0]}")
    for request in token_requests:
        print(f"token request: resource={url} scope={request['scope'][0]}")
    print("list and call: ok")


async def token_for(http, issuer, resource, scope):
    """A token from the provider's token endpoint, by client credentials."""
    config = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
    response = await http.post(
        config["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def rpc(method, id=None, params=None):
    message = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return message


INITIALIZE = rpc(
    "initialize",
    1,
    {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}},
)


async def fewer_scopes_fewer_tools(url, issuer):
    """A tools:read token: hello only; files.read gets 403 naming tools:write."""
    async with httpx2.AsyncClient() as http:
        token = await token_for(http, issuer, url, "tools:read")
        headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"}
        opened = await http.post(url, json=INITIALIZE, headers=headers)
        assert opened.status_code == 200, opened.text
        headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        headers["mcp-protocol-version"] = "2025-11-25"
        await http.post(url, json=rpc("notifications/initialized"), headers=headers)
        listed = await http.post(url, json=rpc("tools/list", 2), headers=headers)
        names = sorted(t["name"] for t in sse_json(listed.text)["result"]["tools"])
        assert names == ["hello.echo", "hello.greet"], names
        call = rpc("tools/call", 3, {"name": "files.read", "arguments": {"path": "a.txt"}})
        refused = await http.post(url, json=call, headers=headers)
        challenge = refused.headers.get("www-authenticate", "")
        assert refused.status_code == 403, refused.status_code
        assert 'error="insufficient_scope"' in challenge and 'scope="tools:write"' in challenge, challenge
        print(f"tools:read token: lists {names}; files.read: 403 {challenge}")


def sse_json(text):
    """The JSON message of a one-event SSE response."""
    data = [line[len("data:") :].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads([d for d in data if d][-1])


async def other_resource_is_refused(url, issuer, other):
    """A genuine token from the same provider, meant for another resource."""
    async with httpx2.AsyncClient() as http:
        token = await token_for(http, issuer, other, "tools:read tools:write")
        headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"}
        refused = await http.post(url, json=INITIALIZE, headers=headers)
        challenge = refused.headers.get("www-authenticate", "")
        assert refused.status_code == 401, refused.status_code
        assert 'error="invalid_token"' in challenge, challenge
        print(f"token for {other}: {refused.status_code} {challenge}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--other-resource", required=True)
    args = parser.parse_args()
    await asyncio.wait_for(discover_and_call(args.url, args.issuer), timeout=60)
    await asyncio.wait_for(fewer_scopes_fewer_tools(args.url, args.issuer), timeout=60)
    await asyncio.wait_for(other_resource_is_refused(args.url, args.issuer, args.other_resource), timeout=60)
    print("all scenarios passed")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
