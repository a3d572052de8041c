import { describe, expect, it } from "vitest";
import { prepBareJid, prepJidPart } from "../../src/xmpp/jid-prep.js";

describe("prepJidPart", () => {
  it.each([
    ["upper case", "Alice", "alice"],
    ["full-width letters", "\uFF21\uFF4C\uFF49\uFF43\uFF45", "alice"],
    ["a soft hyphen", "al\u00ADice", "alice"],
    ["zero-width spaces and joiners", "\u200Ba\u200Cli\u200Dce\u2060", "alice"],
    ["a byte-order mark and a variation selector", "\uFEFFalic\uFE0Fe", "alice"],
    ["a compatibility ligature", "\uFB01ona", "fiona"],
    ["a dotted capital I", "\u0130van", "i\u0307van"],
    ["sharp s, folded to ss", "stra\u00DFe", "strasse"],
    [
      "final sigma, folded to σ",
      "\u03BB\u03CC\u03B3\u03BF\u03C2",
      "\u03BB\u03CC\u03B3\u03BF\u03C3",
    ],
    ["alpha with iota subscript, folded to two letters", "\u1FB3", "\u03B1\u03B9"],
    ["a Cherokee capital, kept (Unicode 3.2 has no lower case for it)", "\u13A0", "\u13A0"],
    ["a Georgian capital, kept (Unicode 3.2 has no lower case for it)", "\u10A0", "\u10A0"],
    ["a CJK compatibility ideograph, by Unicode 3.2's NFKC", "\u{2F874}", "\u5F33"],
    ["the square C/kg, its C folded after NFKC", "\u33C6", "C\u2215kg"],
  ])("prepares %s as ejabberd does", (_case, part, prepared) => {
    expect(prepJidPart(part)).toBe(prepared);
  });

  it("maps each code point, then composes across them as NFKC does", () => {
    expect(prepJidPart("A\u030A")).toBe("\u00E5");
    expect(prepJidPart("\u1100\u1161\u11A8")).toBe("\uAC01");
    // The iota subscript is folded to ι by itself before anything composes with it.
    expect(prepJidPart("\u1F00\u0345")).toBe("\u1F00\u03B9");
    expect(prepJidPart("\u03B1\u0345")).toBe(prepJidPart("\u1FB3"));
  });

  it("keeps apart what ejabberd keeps apart: Cherokee capitals are not their small letters", () => {
    expect(prepJidPart("\u13A0")).not.toBe(prepJidPart("\uAB70"));
  });

  it("keeps apart what ejabberd keeps apart: dotless ı is not i", () => {
    expect(prepJidPart("\u0131van")).not.toBe(prepJidPart("ivan"));
  });

  it("leaves a prepared part as it is", () => {
    for (const part of [
      "alice",
      "josé",
      "用户",
      "i\u0307van",
      "strasse",
      "\u03B1\u03B9",
      "C\u2215kg",
    ]) {
      expect(prepJidPart(prepJidPart(part))).toBe(prepJidPart(part));
    }
  });
});

describe("prepBareJid", () => {
  it("prepares the local part and the domain, and a bare domain", () => {
    expect(prepBareJid("Al\u00ADice@EXAMPLE.org")).toBe("alice@example.org");
    expect(prepBareJid("Conference.EXAMPLE.org")).toBe("conference.example.org");
  });
});
