// A Moat plugin in JavaScript: `stats` reads a text file in a directory the
// operator granted and counts its lines, words and characters and its most
// frequent words. Built with componentize-js against wit/world.wit; every
// call runs in a fresh instance, so nothing here outlives a call.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// Files larger than this are refused rather than read into memory.
const MAX_BYTES = 8 << 20;

const statsSchema = {
  type: 'object',
  properties: {
    path: { type: 'string', description: 'An absolute path inside a granted directory.' },
    top: { type: 'integer', minimum: 0, maximum: 50, default: 5, description: 'How many frequent words to list.' },
  },
  required: ['path'],
  additionalProperties: false,
};

const statsOutput = {
  type: 'object',
  properties: {
    lines: { type: 'integer' },
    words: { type: 'integer' },
    chars: { type: 'integer' },
    bytes: { type: 'integer' },
    top: {
      type: 'array',
      items: {
        type: 'object',
        properties: { word: { type: 'string' }, count: { type: 'integer' } },
        required: ['word', 'count'],
      },
    },
  },
  required: ['lines', 'words', 'chars', 'bytes', 'top'],
};

class Refused extends Error {}

// The granted directory holding `path`, and `path` relative to it.
function locate(path) {
  if (!path.startsWith('/')) throw new Refused(`${path}: not an absolute path`);
  // The longest granted folder that holds the path, as a shell would.
  let found;
  for (const [dir, guest] of getDirectories()) {
    const root = guest.endsWith('/') ? guest : `${guest}/`;
    if (path.startsWith(root) && (!found || root.length > found[1].length)) found = [dir, root];
  }
  if (!found) throw new Refused(`${path}: not in a directory granted to this plugin`);
  return [found[0], path.slice(found[1].length)];
}

// The whole file at `path`, as bytes.
function readFile(path) {
  const [dir, relative] = locate(path);
  let file;
  try {
    file = dir.openAt({ symlinkFollow: true }, relative, {}, { read: true });
  } catch (e) {
    // WASI's error code: `no-entry`, `not-permitted` (a path leaving the
    // granted directory), `access`...
    throw new Refused(`${path}: ${e.payload ?? e}`);
  }
  const size = Number(file.stat().size);
  if (size > MAX_BYTES) throw new Refused(`${path}: ${size} bytes is more than ${MAX_BYTES}`);
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [chunk, end] = file.read(65536n, offset);
    chunks.push(chunk);
    offset += BigInt(chunk.length);
    // The file may have grown since `stat`.
    if (offset > BigInt(MAX_BYTES)) throw new Refused(`${path}: more than ${MAX_BYTES} bytes`);
    if (end || chunk.length === 0) break;
  }
  const bytes = new Uint8Array(Number(offset));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

// Unicode scalar values, without an array of them (8 MiB of text would
// be tens of MiB of strings).
function codePoints(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xdc00 || unit > 0xdfff) n++;
  }
  return n;
}

function stats({ path, top = 5 }) {
  const bytes = readFile(path);
  const text = new TextDecoder().decode(bytes);
  // Letters and digits of any script (the engine has no Unicode property
  // escapes): everything from U+00C0 up counts as a letter.
  const words = text.toLowerCase().match(/[a-z0-9'\u00c0-\uffff]+/g) ?? [];
  const counts = new Map();
  for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
  const frequent = [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, top)
    .map(([word, count]) => ({ word, count }));
  return {
    lines: text === '' ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0),
    words: words.length,
    chars: codePoints(text),
    bytes: bytes.length,
    top: frequent,
  };
}

const noHints = { readOnly: true, destructive: false, idempotent: true, openWorld: false };

export const tools = {
  describe() {
    return [
      {
        name: 'stats',
        title: 'Text statistics',
        description: 'Counts the lines, words and characters of a text file and lists its most frequent words.',
        inputSchema: JSON.stringify(statsSchema),
        outputSchema: JSON.stringify(statsOutput),
        annotations: noHints,
      },
    ];
  },

  call(name, argumentsJson) {
    if (name !== 'stats') throw { tag: 'unknown-tool', val: name };
    const args = JSON.parse(argumentsJson);
    try {
      const result = stats(args);
      const summary = `${result.lines} lines, ${result.words} words, ${result.chars} characters`;
      return {
        content: [{ kind: { tag: 'text', val: summary } }],
        structured: JSON.stringify(result),
        isError: false,
      };
    } catch (e) {
      if (e instanceof Refused) {
        return { content: [{ kind: { tag: 'text', val: e.message } }], isError: true };
      }
      throw { tag: 'failed', val: String(e) };
    }
  },
};
