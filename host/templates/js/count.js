// The tool's logic, in plain JavaScript: `npm test` runs it in Node, and
// plugin.js serves it from the component.

export function count(text) {
  if (text === '') throw new Error('the text is empty');
  return {
    lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0),
    words: text.split(/\s+/).filter(Boolean).length,
    chars: [...text].length,
  };
}
