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
  ])("prepares %s as ejabberd does", (_case, part, prepared) => {
    expect(prepJidPart(part)).toBe(prepared);
  });

  it("keeps apart what ejabberd keeps apart: dotless ı is not i", () => {
    expect(prepJidPart("\u0131van")).not.toBe(prepJidPart("ivan"));
  });

  it("leaves a prepared part as it is", () => {
    for (const part of ["alice", "josé", "用户", "i\u0307van"]) {
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
