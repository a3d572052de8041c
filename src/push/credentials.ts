import { readFile } from "node:fs/promises";

/**
 * A credential given either inline (a PEM block or a JSON object, as secret stores inject them)
 * or as a path to the file that holds it.
 */
export async function readCredential(value: string): Promise<string> {
  const trimmed = value.trim();
  if (trimmed.startsWith("-----BEGIN") || trimmed.startsWith("{")) return trimmed;
  return (await readFile(trimmed, "utf8")).trim();
}
