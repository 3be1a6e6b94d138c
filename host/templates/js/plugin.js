// {{name}}: a Moat plugin in JavaScript. `tools.describe` lists the tools
// (JSON Schemas as text); `tools.call` runs one with its arguments, which
// Moat has already checked against the schema. Each call runs in a fresh
// instance. Files come from WASI (see wit/world.wit):
//   import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

import { count } from './count.js';

const countInput = {
  type: 'object',
  properties: { text: { type: 'string', description: 'The text to count.' } },
  required: ['text'],
  additionalProperties: false,
};

const countOutput = {
  type: 'object',
  properties: {
    lines: { type: 'integer' },
    words: { type: 'integer' },
    chars: { type: 'integer' },
  },
  required: ['lines', 'words', 'chars'],
};

function text(value) {
  return { kind: { tag: 'text', val: value } };
}

export const tools = {
  describe() {
    return [
      {
        name: 'count',
        description: 'Counts the lines, words and characters of a text.',
        inputSchema: JSON.stringify(countInput),
        outputSchema: JSON.stringify(countOutput),
        annotations: { readOnly: true },
      },
    ];
  },

  call(name, argumentsJson) {
    // A thrown `{ tag, val }` is the call's `call-error`.
    if (name !== 'count') throw { tag: 'unknown-tool', val: name };
    const args = JSON.parse(argumentsJson);
    try {
      const counts = count(args.text);
      return { content: [text(JSON.stringify(counts))], structured: JSON.stringify(counts), isError: false };
    } catch (e) {
      // An error result: the model sees it and may try again.
      return { content: [text(e.message)], isError: true };
    }
  },
};
