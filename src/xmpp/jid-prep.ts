/**
 * Stringprep's "commonly mapped to nothing" (RFC 3454, table B.1): soft hyphen, zero-width
 * spaces and joiners, variation selectors, the byte-order mark. Nodeprep and nameprep drop them,
 * so ejabberd reads "al\u00ADice" as alice.
 */
const MAPPED_TO_NOTHING =
  /\u00AD|\u034F|\u1806|[\u180B-\u180D]|[\u200B-\u200D]|\u2060|[\uFE00-\uFE0F]|\uFEFF/gu;

/**
 * A JID's local part or domain as ejabberd compares it (nodeprep, nameprep), near enough for
 * one account to have one spelling here: table B.1 dropped, NFKC (full-width and compatibility
 * forms to plain ones) and lower case. Lower-casing stands in for stringprep's case folding: it
 * folds less (ß stays ß, where folding gives ss), never more, so two accounts ejabberd keeps
 * apart are never taken for one; full case folding would also turn the dotless ı into i.
 */
export function prepJidPart(part: string): string {
  return part.replace(MAPPED_TO_NOTHING, "").normalize("NFKC").toLowerCase().normalize("NFKC");
}

/** A bare JID (`local@domain` or a bare domain) with each part prepared by prepJidPart. */
export function prepBareJid(bare: string): string {
  const at = bare.indexOf("@");
  if (at === -1) return prepJidPart(bare);
  return `${prepJidPart(bare.slice(0, at))}@${prepJidPart(bare.slice(at + 1))}`;
}
