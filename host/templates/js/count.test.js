import { test } from 'node:test';
import assert from 'node:assert/strict';
import { count } from './count.js';

test('counts lines, words and characters', () => {
  assert.deepEqual(count('héllo wörld\nbye'), { lines: 2, words: 3, chars: 15 });
  assert.throws(() => count(''), /empty/);
});
