"""The official MCP Python SDK (pinned in requirements.txt) uses what a
plugin offers besides tools, and answers what a plugin asks of it, in both
negotiation modes: with the initialize handshake ("legacy": the plugin's
requests come as sampling/createMessage and elicitation/create on the
call's stream) and with 2026-07-28 ("auto": they come in an
InputRequiredResult, the SDK retries with the answer, and the call runs
again with it).

It reads a fixed and a templated resource, gets a prompt with arguments,
completes an argument, and answers the conformance plugin's sampling and
elicitation. Against a Moat that serves the same plugin without the
grants, the plugin's requests fail inside the plugin (its result says "not
granted") and nothing reaches the client. Over stateless HTTP, only
2026-07-28 can carry the requests; before it the plugin is told the
client cannot be asked. Run by tests/tests/all/client_requests.rs; by hand:
    python client_requests.py GRANTED_URL UNGRANTED_URL STATELESS_URL
"""

import asyncio
import json
import sys

import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError


class Answerer:
    """Sampling and elicitation callbacks that remember what they saw."""

    def __init__(self):
        self.samples, self.forms = [], []

    async def sample(self, context, params):
        self.samples.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="four"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def elicit(self, context, params):
        self.forms.append(params)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    def client(self, url, mode):
        return Client(url, mode=mode, sampling_callback=self.sample, elicitation_callback=self.elicit)


def text(result):
    return "\n".join(c.text for c in result.content if c.type == "text")


async def features(url, mode):
    answerer = Answerer()
    async with answerer.client(url, mode) as client:
        listed = await client.list_resources()
        assert "test://static-text" in [str(r.uri) for r in listed.resources], listed
        read = await client.read_resource("test://static-text")
        assert read.contents[0].text == "This is the content of the static text resource.", read
        data = await client.read_resource("test://template/7/data")
        assert json.loads(data.contents[0].text)["id"] == "7", data
        templates = await client.list_resource_templates()
        assert "test://template/{id}/data" in [t.uri_template for t in templates.resource_templates]

        prompts = await client.list_prompts()
        assert "test_prompt_with_arguments" in [p.name for p in prompts.prompts], prompts
        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "sun", "arg2": "moon"})
        assert "arg1='sun', arg2='moon'" in prompt.messages[0].content.text, prompt
        done = await client.complete(
            types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
            {"name": "arg1", "value": "pa"})
        assert done.completion.values == ["paris", "park", "party"], done

        sampled = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
        assert not sampled.is_error and text(sampled) == "LLM response: four", sampled
        assert len(answerer.samples) == 1, answerer.samples
        asked = answerer.samples[0]
        assert asked.max_tokens == 100 and asked.messages[0].content.text == "What is 2+2?", asked

        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        assert not elicited.is_error and "action=accept" in text(elicited), elicited
        assert '"username":"ada"' in text(elicited), elicited
        assert [f.message for f in answerer.forms] == ["Who are you?"], answerer.forms
        if mode == "auto":
            # A retry whose state was not sealed for this call is refused,
            # named; the next call is served.
            try:
                await client.session.call_tool(
                    "test_sampling", {"prompt": "What is 2+2?"},
                    input_responses={"moat_ask_0": {"role": "assistant", "model": "m",
                                                    "content": {"type": "text", "text": "5"}}},
                    request_state="forged", allow_input_required=True)
                raise AssertionError("a forged requestState was taken")
            except MCPError as e:
                assert e.code == -32602 and "requestState is not one Moat sealed" in str(e), e
            again = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
            assert text(again) == "LLM response: four", again
        where = "stdio" if isinstance(url, StdioServerParameters) else "http"
        print(f"ok features {where} mode={mode} protocol={client.protocol_version}")


async def ungranted(url, mode):
    answerer = Answerer()
    async with answerer.client(url, mode) as client:
        sampled = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
        assert sampled.is_error and "not granted" in text(sampled), sampled
        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        assert elicited.is_error and "not granted" in text(elicited), elicited
        assert not answerer.samples and not answerer.forms, "nothing reaches the client"
        # The host still serves.
        read = await client.read_resource("test://static-text")
        assert read.contents, read
        print(f"ok ungranted mode={mode}")


async def budget(url):
    """The testbed may sample 50 tokens a call: five questions of ten are
    asked, the rest refused inside the plugin; none of them reach the
    client. Without the elicitation grant its form is refused too."""
    for mode in ("legacy", "auto"):
        answerer = Answerer()
        async with answerer.client(url, mode) as client:
            result = await client.call_tool("testbed.ask_many", {"count": 8, "max_tokens": 10})
            assert text(result).startswith("answered 5, refused 3: NotGranted"), result
            assert len(answerer.samples) == 5, len(answerer.samples)
            form = await client.call_tool("testbed.ask_form", {})
            assert text(form).startswith("NotGranted"), form
            assert not answerer.forms
            huge = await client.call_tool("testbed.ask_huge", {})
            assert text(huge).startswith("Err(Invalid(") and "at most 256" in text(huge), huge
            assert len(answerer.samples) == 5, "the oversized request never left"
            # A call still running wasm after a few milliseconds is
            # CPU-bound; its request still reaches this client.
            busy = await client.call_tool(
                "testbed.ask_many", {"count": 1, "max_tokens": 10, "spin_ms": 40})
            assert text(busy).startswith("answered 1, refused 0"), busy
            assert len(answerer.samples) == 6, len(answerer.samples)
    print("ok budget")


async def stateless(url):
    answerer = Answerer()
    async with answerer.client(url, "legacy") as client:
        sampled = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
        assert sampled.is_error and "only a session can carry a request" in text(sampled), sampled
        assert not answerer.samples
    async with answerer.client(url, "auto") as client:
        sampled = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
        assert not sampled.is_error and text(sampled) == "LLM response: four", sampled
        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        assert "action=accept" in text(elicited), elicited
    print("ok stateless")


async def main():
    granted, bare, no_sessions, moat, config = sys.argv[1:6]
    stdio = StdioServerParameters(command=moat, args=["serve", "--stdio", "--config", config])
    for mode in ("legacy", "auto"):
        await features(stdio, mode)
        await features(granted, mode)
        await ungranted(bare, mode)
    await budget(granted)
    await stateless(no_sessions)


asyncio.run(main())
