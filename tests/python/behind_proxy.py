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


asyncio.run(main())
