import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  ejabberdNodeprep,
  ejabberdOverrides,
  OVERRIDES_PATH,
  renderOverrides,
} from "../../scripts/nodeprep-table.js";
import { prepBareJid, prepJidPart } from "../../src/xmpp/jid-prep.js";
import { NODEPREP_OVERRIDES, NODEPREP_TABLE_VERSION } from "../../src/xmpp/nodeprep-overrides.js";

// Against the stringprep of the installed ejabberd (erl and p1_stringprep, which CI installs).
describe("JID preparation against ejabberd's nodeprep", () => {
  it("has the override table the installed ejabberd gives (npm run nodeprep-table)", () => {
    const table = ejabberdOverrides();
    expect(NODEPREP_TABLE_VERSION).toBe(table.version);
    expect(new Map(NODEPREP_OVERRIDES)).toEqual(table.overrides);
    expect(readFileSync(OVERRIDES_PATH, "utf8")).toBe(renderOverrides(table));
  });

  it("prepares every code point ejabberd accepts as ejabberd does", () => {
    const chars: string[] = [];
    for (let code = 0; code <= 0x10ffff; code++) {
      if (code < 0xd800 || code > 0xdfff) chars.push(String.fromCodePoint(code));
    }
    const prepared = ejabberdNodeprep(chars);
    expect(prepared).toHaveLength(chars.length);
    const wrong: string[] = [];
    chars.forEach((char, i) => {
      const expected = prepared[i];
      if (expected != null && prepJidPart(char) !== expected) {
        wrong.push(`U+${char.codePointAt(0)?.toString(16)}`);
      }
    });
    expect(wrong).toEqual([]);
  }, 120_000);

  it("prepares strings of several code points as ejabberd does, composition included", () => {
    // Letters, case pairs, combining marks (iota subscript among them), conjoining jamo,
    // compatibility forms and the code points of the override table.
    const pool = [
      ..."aAzZ09-_.ßςΣσαΑıİiI",
      ...range(0x300, 0x36f),
      ...range(0x1100, 0x1112),
      ...range(0x1161, 0x1175),
      ...range(0x11a8, 0x11c2),
      ...range(0x1f00, 0x1fff),
      ...range(0xff21, 0xff3a),
      ..."\u00ad\u200b\ufeff\ufb01\u2126\u212b\u0130\u33c6\u1e9b\u0323",
      ...[...NODEPREP_OVERRIDES.keys()].map((code) => String.fromCodePoint(code)),
    ];
    let seed = 20230101;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const samples = ["A\u030A", "Stra\u00DFe", "\u03B1\u0345", "\u1100\u1161\u11A8", "\u{2F874}x"];
    for (let i = 0; i < 20000; i++) {
      let sample = "";
      for (let n = 2 + random(5); n > 0; n--) sample += pool[random(pool.length)];
      samples.push(sample);
    }
    const prepared = ejabberdNodeprep(samples);
    const compared = samples.filter((_, i) => prepared[i] != null);
    expect(compared.length).toBeGreaterThan(1000);
    const wrong = samples.filter(
      (sample, i) =>
        prepared[i] != null &&
        prepBareJid(`${sample}@example.org`) !== `${prepared[i]}@example.org`,
    );
    // p1_stringprep's canonical reordering only swaps a mark back over the marks since the
    // last one left in place, so where three or more marks in a row (after decomposition) need
    // reordering it departs from NFKC; prepJidPart follows Unicode there. Nowhere else.
    const runOfMarks = /\p{M}{3,}/u;
    expect(wrong.filter((sample) => !runOfMarks.test(sample.normalize("NFKD"))).map(hex)).toEqual(
      [],
    );
    expect(wrong.length).toBeLessThan(compared.length / 100);
  }, 120_000);
});

function range(first: number, last: number): string[] {
  return Array.from({ length: last - first + 1 }, (_, i) => String.fromCodePoint(first + i));
}

function hex(value: string): string {
  return [...value].map((char) => char.codePointAt(0)?.toString(16)).join(" ");
}
