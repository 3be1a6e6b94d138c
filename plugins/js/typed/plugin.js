// A generic component in JavaScript: the same WIT world as plugins/typed
// (plain exports, no moat:plugin), as the community writes them with
// componentize-js. tests/tests/all/generic.rs calls both through Moat and
// expects the same answers.

export function add(a, b) {
  return a + b;
}

export function describe(p, c, f, s, tags, note, pair, big) {
  const flags = Object.entries(f).filter(([, on]) => on).map(([name]) => name);
  const shape = {
    circle: () => `circle ${s.val}`,
    rect: () => `rect ${s.val.x},${s.val.y}`,
    empty: () => 'empty',
  }[s.tag]();
  return `point ${p.x},${p.y}; ${c}; ${flags.join('+')}; ${shape}; tags ${tags.join('+')}; ` +
    // componentize-js 0.23 hands an `s64` over as its unsigned bits.
    `note ${note ?? 'none'}; pair ${pair[0]} ${pair[1]}; big ${BigInt.asIntN(64, big)}`;
}

export function divide(a, b) {
  // A thrown value is the `err` of a `result`.
  if (b === 0) throw `cannot divide ${a} by zero`;
  return a / b;
}

export function parse(items) {
  return items.map((s) =>
    /^[0-9]+$/.test(s) && Number(s) <= 0xffffffff
      ? { tag: 'ok', val: Number(s) }
      : { tag: 'err', val: `${JSON.stringify(s)}: invalid digit found in string` });
}

export function settle(r) {
  return `${r.tag} ${r.val}`;
}

export function first(items) {
  // An option of an option: the outer `some` is tagged.
  return items.length === 0 ? undefined : { tag: 'some', val: items[0] };
}

export function fill(byte, count) {
  return new Uint8Array(count).fill(byte);
}

export function reverse(data) {
  return Uint8Array.from(data).reverse();
}

export function middle(a, b) {
  return { x: Math.trunc((a.x + b.x) / 2), y: Math.trunc((a.y + b.y) / 2) };
}

export const text = {
  count(s) {
    return [...s].length;
  },
};
