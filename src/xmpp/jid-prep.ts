import { NODEPREP_OVERRIDES } from "./nodeprep-overrides.js";

/**
 * Stringprep's "commonly mapped to nothing" (RFC 3454, table B.1): soft hyphen, zero-width
 * spaces and joiners, variation selectors, the byte-order mark. Nodeprep and nameprep drop them,
 * so ejabberd reads "al\u00ADice" as alice.
 */
const MAPPED_TO_NOTHING =
  /\u00AD|\u034F|\u1806|[\u180B-\u180D]|[\u200B-\u200D]|\u2060|[\uFE00-\uFE0F]|\uFEFF/gu;

// Nodeprep of ASCII is lower case and nothing else.
const ASCII = /^\p{ASCII}*$/u;

/**
 * One code point as this runtime's Unicode tables prepare it: table B.1 dropped, NFKC, lower
 * case, NFKC again. For all but a few hundred code points this is what stringprep's mapping
 * (B.1, and B.2: case folding closed under NFKC) followed by NFKC gives; those few are in
 * NODEPREP_OVERRIDES, generated from ejabberd's own stringprep by scripts/nodeprep-table.ts
 * with this function as the baseline.
 */
export function prepCodePointByRuntime(char: string): string {
  return char.replace(MAPPED_TO_NOTHING, "").normalize("NFKC").toLowerCase().normalize("NFKC");
}

/**
 * A JID's local part or domain as ejabberd compares it: exactly what its nodeprep gives (and
 * nameprep, for a domain; their mapping is the same, only the prohibited code points differ),
 * in the same order as stringprep: every code point mapped by itself, then NFKC over the whole
 * string, which composes across code points ("A\u030A" is "å"). Lower case alone would not do:
 * it folds less than stringprep (ß stays ß, ς stays ς where ejabberd has ss and σ; ejabberd has
 * "ᾳ" as "αι") and, with today's tables instead of Unicode 3.2's, more (Cherokee and Georgian
 * capitals, which ejabberd keeps as they are) and differently (five CJK compatibility
 * ideographs whose NFKC was corrected later), so it both merged accounts ejabberd keeps apart
 * and missed names ejabberd gives in prepared form. Code points nodeprep prohibits (spaces,
 * controls, private use, code points unassigned in Unicode 3.2, ...) are prepared somehow
 * and are not refused here: ejabberd never routes or authenticates a JID holding them.
 */
export function prepJidPart(part: string): string {
  if (ASCII.test(part)) return part.toLowerCase();
  let mapped = "";
  for (const char of part) {
    mapped += NODEPREP_OVERRIDES.get(char.codePointAt(0) ?? 0) ?? prepCodePointByRuntime(char);
  }
  return mapped.normalize("NFKC");
}

/** A bare JID (`local@domain` or a bare domain) with each part prepared by prepJidPart. */
export function prepBareJid(bare: string): string {
  const at = bare.indexOf("@");
  if (at === -1) return prepJidPart(bare);
  return `${prepJidPart(bare.slice(0, at))}@${prepJidPart(bare.slice(at + 1))}`;
}
