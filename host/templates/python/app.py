"""{{name}}: a Moat plugin in Python. `describe` lists the tools (JSON
Schemas as text); `call` runs one with its arguments, which Moat has
already checked against the schema. Each call runs in a fresh instance;
`open` reaches only the directories granted in moat.toml."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from count import count

COUNT_INPUT = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The text to count."}},
    "required": ["text"],
    "additionalProperties": False,
}

COUNT_OUTPUT = {
    "type": "object",
    "properties": {name: {"type": "integer"} for name in ("lines", "words", "chars")},
    "required": ["lines", "words", "chars"],
}


def text(value):
    return types.Content(kind=types.ContentKind_Text(value), annotations=None)


class Tools(exports.Tools):
    def describe(self):
        return [
            types.Tool(
                name="count",
                title=None,
                description="Counts the lines, words and characters of a text.",
                input_schema=json.dumps(COUNT_INPUT),
                output_schema=json.dumps(COUNT_OUTPUT),
                annotations=types.Annotations(
                    read_only=True, destructive=None, idempotent=None, open_world=None
                ),
            )
        ]

    def call(self, name, arguments):
        if name != "count":
            raise Err(types.CallError_UnknownTool(name))
        args = json.loads(arguments)
        try:
            counts = count(args["text"])
        except ValueError as e:
            # An error result: the model sees it and may try again.
            return types.CallResult(content=[text(str(e))], structured=None, is_error=True)
        said = json.dumps(counts)
        return types.CallResult(content=[text(said)], structured=said, is_error=False)
