"""A user connects an upstream account through Moat's URL-mode elicitation,
driven by the official MCP Python SDK (pinned in requirements.txt).

Run by tests/tests/all/connections.rs; by hand:
    python connect.py --url http://127.0.0.1:PORT/t/acme/mcp --token JWT \
        --api http://127.0.0.1:API --step connect --subject alice --login alice-gh

Steps:
- connect: a client without the elicitation capability is told, in the
  tool's error, which link to open; a client with it gets the URL
  elicitation, on the call's stream before 2026-07-28 and in an
  InputRequiredResult at 2026-07-28. Someone else who opens the link
  signs in at the MCP endpoint's authorization server as themselves, and
  is refused. Then, asked again, the script follows the link as the
  caller's browser would (the MCP authorization server's sign-in as
  SUBJECT, Moat's page, the provider's login and consent, back to Moat)
  and accepts, and the waiting call returns its result. Prints one line
  per scenario.
- call: calls the tool once, without the elicitation capability, and
  prints what it returned, or the kind of its tool error.
- reconnect: before 2026-07-28, connects during the call as above.
"""

import argparse
import asyncio
import re
import sys

import httpx2
import mcp.types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

URL_ELICITATION_REQUIRED = -32042


async def decline(context, params):
    """An elicitation callback (so the client declares URL elicitation)."""
    return types.ElicitResult(action="decline")


async def call(url, token, api, mode, callback):
    """testbed.request of the API's /user: (result or None, error or None)."""
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode,
                            elicitation_callback=callback) as client:
        try:
            return await client.call_tool("testbed.request", {"url": f"{api}/user"}), None
        except MCPError as e:
            return None, e


def form_action(page, base):
    """The action of the page's one form (the page's own URL when none)."""
    match = re.search(r'<form[^>]*?action="([^"]*)"', page)
    if not match or not match.group(1):
        return base
    return str(httpx2.URL(base).join(match.group(1).replace("&amp;", "&")))


async def sign_in(browser, answer, login):
    """Goes through the provider's login and consent pages from `answer`."""
    for _ in range(4):
        if "name=\"login\"" in answer.text:
            answer = await browser.post(form_action(answer.text, str(answer.url)),
                                        data={"prompt": "login", "login": login, "password": "x"})
        elif "name=\"prompt\" value=\"consent\"" in answer.text:
            answer = await browser.post(form_action(answer.text, str(answer.url)),
                                        data={"prompt": "consent"})
        else:
            break
    return answer


async def forwarded(link):
    """Someone other than the caller opens `link`: they sign in at the MCP
    authorization server as themselves, and connect nothing."""
    async with httpx2.AsyncClient(follow_redirects=True) as victim:
        answer = await sign_in(victim, await victim.get(link), "bob")
        assert answer.status_code == 403, answer.text
        assert "You signed in as <b>bob</b>" in answer.text and "alice at acme" in answer.text, answer.text
        print("a link opened by another user: refused")

        posted = await victim.post(link, data={"continue": "1"})
        assert posted.status_code == 403 and "sign in first" in posted.text, posted.text
        print("the form without signing in: refused")

        # "Sign in as someone else" asks the authorization server for a
        # fresh sign-in, though bob's session there is still open.
        again = re.search(r'href="([^"]*\?again)"', answer.text).group(1).replace("&amp;", "&")
        fresh = await victim.get(again)
        assert fresh.status_code == 200 and 'name="login"' in fresh.text, fresh.text


async def follow(link, subject, login):
    """Does in a browser's stead what the user does at `link`; first, a
    browser that did not start the sign-in tries to finish it."""
    async with httpx2.AsyncClient(follow_redirects=True) as browser:
        page = await sign_in(browser, await browser.get(link), subject)
        assert page.status_code == 200, page.text
        print("signed in as the caller: the link's page")
        assert "Connect gh" in page.text and "alice at acme" in page.text, page.text
        assert page.headers["referrer-policy"] == "no-referrer", page.headers

        # The link is no sign-in's state.
        base, ticket = link.split("/connect/")
        wrong = await browser.get(f"{base}/connect/callback/gh", params={"state": ticket, "code": "x"})
        assert wrong.status_code == 400 and "not valid here" in wrong.text, wrong.text
        print("a link as a sign-in's state: refused")

        # A post from another site's page starts nothing.
        forged = await browser.post(link, data={"continue": "1"}, headers={"sec-fetch-site": "cross-site"})
        assert forged.status_code == 403, forged.text

        # The user declines at the provider: it sends an error back, and
        # nothing is connected.
        declined = await browser.post(link, data={"continue": "1"}, follow_redirects=False)
        state = httpx2.URL(declined.headers["location"]).params["state"]
        back = await browser.get(f"{base}/connect/callback/gh", params={"state": state, "error": "access_denied"})
        assert back.status_code == 400 and "access_denied" in back.text, back.text
        print("declined at the provider: nothing connected")

        # Moat's button: the provider's URL, with a state tied to this browser.
        started = await browser.post(link, data={"continue": "1"}, follow_redirects=False)
        assert started.status_code == 303, started.text
        to_provider = started.headers["location"]

        # Someone else's browser, sent that URL, signs in there: refused.
        async with httpx2.AsyncClient(follow_redirects=True) as other:
            answer = await sign_in(other, await other.get(to_provider), "mallory-gh")
            assert answer.status_code == 400 and "did not start this sign-in" in answer.text, answer.text
        print("a sign-in finished in another browser: refused")

        answer = await sign_in(browser, await browser.get(to_provider), login)
        assert answer.status_code == 200 and "Connected" in answer.text, (answer.url, answer.text)
        return str(answer.url)


async def connect(args):
    # A client without the capability: the link is in the tool's error.
    result, error = await call(args.url, args.token, args.api, "legacy", None)
    assert error is None, error
    text = result.content[0].text
    assert result.is_error and text.startswith("needs_connection: "), text
    assert "needs your gh account" in text, text
    print("without url elicitation: the link is in the error")

    # With it, the call asks and waits: on the call's own stream before
    # 2026-07-28 (elicitation/create), in an InputRequiredResult at
    # 2026-07-28. Declined, it ends with the link in a tool error.
    for mode in ["legacy", "auto"]:
        asked = []

        async def declining(context, params):
            asked.append(params)
            return types.ElicitResult(action="decline")

        result, error = await call(args.url, args.token, args.api, mode, declining)
        assert error is None, error
        text = result.content[0].text
        assert result.is_error and "chose not to connect" in text and "/connect/" in text, text
        assert len(asked) == 1 and asked[0].mode == "url" and "/connect/" in asked[0].url, asked
        link = asked[0].url
        print(f"url elicitation mode={mode}: asked, declined")

    await forwarded(link)

    # Asked again, the user connects in their browser while the call
    # waits, and the call's result comes back.
    await connect_during_call(args, "auto")

    result, error = await call(args.url, args.token, args.api, "legacy", decline)
    assert error is None, error
    text = result.content[0].text
    assert not result.is_error and text.startswith("200\n"), text
    print(f"after connecting mode=legacy: {text.splitlines()[-1]}")


async def once(args):
    result, error = await call(args.url, args.token, args.api, "legacy", None)
    if error is not None:
        print(f"error {error.error.code}")
    elif result.is_error:
        print(f"tool error {result.content[0].text.split(':')[0]}")
    else:
        print(f"result {result.content[0].text.splitlines()[-1]}")


async def connect_during_call(args, mode):
    """The call asks (in mode's way), the user connects in their browser
    and accepts while it waits, and the call's result comes back."""
    async def connecting(context, params):
        ended_at = await follow(params.url, args.subject, args.login)
        print(f"connected, back at {httpx2.URL(ended_at).path}")
        return types.ElicitResult(action="accept")

    result, error = await call(args.url, args.token, args.api, mode, connecting)
    assert error is None, error
    text = result.content[0].text
    assert not result.is_error and text.startswith("200\n"), text
    print(f"connected during the call mode={mode}: {text.splitlines()[-1]}")


async def reconnect(args):
    """Before 2026-07-28, with sessions: asked on the call's stream."""
    await connect_during_call(args, "legacy")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--step", choices=["connect", "call", "reconnect"], required=True)
    parser.add_argument("--subject", default="alice")
    parser.add_argument("--login", default="alice-gh")
    args = parser.parse_args()
    steps = {"connect": connect, "call": once, "reconnect": reconnect}
    await steps[args.step](args)
    print("done")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
