"""The official MCP Python SDK through nginx over https, trusting the test's
CA: lists and calls tools with a bearer token, and reads the protected-
resource metadata and the 401 challenge, which must name the public https
URL. Run by tests/tests/all/deploy.rs; by hand:
    python behind_proxy.py URL CA_PEM TOKEN
"""

import asyncio
import ssl
import sys
import urllib.parse

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main():
    url, ca, token = sys.argv[1:4]
    tls = ssl.create_default_context(cafile=ca)
    parts = urllib.parse.urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    metadata_url = f"{origin}/.well-known/oauth-protected-resource{parts.path}"

    for mode in ("legacy", "auto"):
        http = httpx2.AsyncClient(verify=tls, headers={"authorization": f"Bearer {token}"})
        async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "hello.greet" in names, names
            greet = await client.call_tool("hello.greet", {"name": "tls"})
            assert not greet.is_error and greet.content[0].text == "Hello, tls!", greet
            print(f"ok call over https mode={mode} protocol={client.protocol_version}")

    async with httpx2.AsyncClient(verify=tls) as http:
        document = (await http.get(metadata_url)).json()
        assert document["resource"] == url, document
        print(f"ok metadata resource={document['resource']}")
        refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  headers={"accept": "application/json, text/event-stream"})
        challenge = refused.headers["www-authenticate"]
        assert refused.status_code == 401 and f'resource_metadata="{metadata_url}"' in challenge, challenge
        print(f"ok challenge {challenge}")

    # A client on 127.0.0.3 (no trusted proxy) forging forwarding headers
    # through nginx: its real address is recorded, and a Host of its
    # choosing is checked as the host it asked for.
    forger = httpx2.AsyncHTTPTransport(local_address="127.0.0.3", verify=tls)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "hello.greet", "arguments": {"name": "forged-through-proxy"}}}
    headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-11-25", "x-forwarded-for": "198.51.100.78",
               "forwarded": "for=198.51.100.77;host=localhost", "x-forwarded-host": "localhost"}
    async with httpx2.AsyncClient(transport=forger) as http:
        answer = await http.post(url, json=call, headers=headers)
        assert answer.status_code == 200 and "Hello, forged-through-proxy!" in answer.text, answer.text
        print("ok forged forwarding headers through the proxy did not change the caller")
        rebound = await http.post(url, json=call, headers={**headers, "host": "evil.example"})
        assert rebound.status_code == 403, (rebound.status_code, rebound.text)
        print("ok a Host of the client's choosing is refused through the proxy")


asyncio.run(main())
