/**
 * Writes src/xmpp/nodeprep-overrides.ts: the code points for which prepCodePointByRuntime
 * (this runtime's Unicode tables) gives something else than the nodeprep and nameprep of the
 * installed ejabberd (its p1_stringprep NIF, Unicode 3.2 tables), with ejabberd's result.
 *
 *   npm run nodeprep-table
 *
 * Needs `erl` and p1_stringprep (Debian's ejabberd brings both); P1_STRINGPREP_EBIN names its
 * ebin directory if it is not under /usr/lib/erlang/lib. An integration test runs the same
 * comparison and fails when the checked-in table is stale.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { prepCodePointByRuntime } from "../src/xmpp/jid-prep.js";

const ROOT = resolve(fileURLToPath(import.meta.url), "../..");
export const OVERRIDES_PATH = join(ROOT, "src/xmpp/nodeprep-overrides.ts");
const LAST_CODE_POINT = 0x10ffff;

/**
 * The ebin directory of p1_stringprep. Its NIF is found as ejabberd finds it:
 * code:priv_dir(stringprep), the priv/lib directory next to this ebin.
 */
export function stringprepEbin(): string {
  const fromEnv = process.env.P1_STRINGPREP_EBIN;
  if (fromEnv) return fromEnv;
  for (const libDir of ["/usr/lib/erlang/lib", "/usr/local/lib/erlang/lib"]) {
    let names: string[];
    try {
      names = readdirSync(libDir);
    } catch {
      continue;
    }
    const found = names.filter((name) => name.startsWith("p1_stringprep-")).sort();
    const last = found.at(-1);
    if (last) return join(libDir, last, "ebin");
  }
  throw new Error("p1_stringprep not found: install ejabberd or set P1_STRINGPREP_EBIN");
}

// Erlang helpers shared by both scripts below: the library's version, then one line per result.
const ERLANG_PRELUDE = `
{ok, _} = application:ensure_all_started(stringprep),
{ok, Vsn} = application:get_key(stringprep, vsn),
Hex = fun(error) -> "-"; (B) -> lists:join(" ", [integer_to_list(C, 16) || C <- unicode:characters_to_list(B)]) end,
io:put_chars(["vsn ", Vsn, "\\n"]),`;

function runErlang(script: string): { version: string; lines: string[] } {
  const output = execFileSync(
    "erl",
    ["-noshell", "-pa", stringprepEbin(), "-eval", `${ERLANG_PRELUDE}${script} halt().`],
    { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 },
  );
  const [first = "", ...lines] = output.split("\n").filter((line) => line !== "");
  if (!first.startsWith("vsn ")) throw new Error(`unexpected output from erl: ${first}`);
  return { version: first.slice(4), lines };
}

function decode(hex: string): string | null {
  if (hex === "-") return null;
  if (hex === "") return "";
  return String.fromCodePoint(...hex.split(" ").map((digits) => Number.parseInt(digits, 16)));
}

export interface EjabberdPrep {
  /** p1_stringprep's version, e.g. "1.0.29". */
  version: string;
  /** The overrides the checked-in module should hold, by code point. */
  overrides: Map<number, string>;
}

/**
 * Asks ejabberd's stringprep for the nodeprep and nameprep of every code point (surrogates
 * aside), and keeps those where prepCodePointByRuntime disagrees. Where both accept a code
 * point they must agree (their mapping is the same), so one table serves local parts and
 * domains; where only nameprep accepts it (the space-bearing U+037A), nameprep's result is kept.
 */
export function ejabberdOverrides(): EjabberdPrep {
  // Only code points that some profile changes or refuses are printed: the rest map to themselves.
  const { version, lines } = runErlang(`
F = fun(C) ->
  S = <<C/utf8>>, N = stringprep:nodeprep(S), M = stringprep:nameprep(S),
  case N =:= S andalso M =:= S of
    true -> [];
    false -> [integer_to_list(C, 16), $;, Hex(N), $;, Hex(M), $\\n]
  end
end,
io:put_chars([F(C) || C <- lists:seq(0, 16#D7FF) ++ lists:seq(16#E000, ${LAST_CODE_POINT})]),`);
  const changed = new Map<number, [string | null, string | null]>();
  for (const line of lines) {
    const [code = "", node = "", name = ""] = line.split(";");
    changed.set(Number.parseInt(code, 16), [decode(node), decode(name)]);
  }
  const overrides = new Map<number, string>();
  for (let code = 0; code <= LAST_CODE_POINT; code++) {
    if (code >= 0xd800 && code <= 0xdfff) continue;
    const char = String.fromCodePoint(code);
    const [node, name] = changed.get(code) ?? [char, char];
    if (node !== null && name !== null && node !== name) {
      throw new Error(`nodeprep and nameprep map U+${code.toString(16)} differently`);
    }
    const expected = node ?? name;
    if (expected === null || prepCodePointByRuntime(char) === expected) continue;
    if (expected.normalize("NFKC") !== expected) {
      throw new Error(`ejabberd's U+${code.toString(16)} is not NFKC-stable here`);
    }
    overrides.set(code, expected);
  }
  return { version, overrides };
}

/** ejabberd's nodeprep of each string; null where it refuses one. */
export function ejabberdNodeprep(parts: readonly string[]): (string | null)[] {
  const dir = mkdtempSync(join(tmpdir(), "nodeprep-"));
  try {
    const input = join(dir, "input");
    const hex = (part: string) => [...part].map((c) => c.codePointAt(0)?.toString(16)).join(" ");
    writeFileSync(input, `${parts.map(hex).join("\n")}\n`);
    const { lines } = runErlang(`
{ok, Input} = file:read_file("${input}"),
Parts = [[list_to_integer(D, 16) || D <- string:lexemes(L, " ")] || L <- string:split(binary_to_list(Input), "\\n", all), L =/= ""],
io:put_chars([["r", Hex(stringprep:nodeprep(unicode:characters_to_binary(P))), $\\n] || P <- Parts]),`);
    return lines.map((line) => decode(line.slice(1)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function quote(value: string): string {
  let out = "";
  for (const char of value) {
    const code = char.codePointAt(0) ?? 0;
    if (code >= 0x20 && code < 0x7f && char !== '"' && char !== "\\") out += char;
    else if (code <= 0xffff) out += `\\u${code.toString(16).toUpperCase().padStart(4, "0")}`;
    else out += `\\u{${code.toString(16).toUpperCase()}}`;
  }
  return `"${out}"`;
}

export function renderOverrides({ version, overrides }: EjabberdPrep): string {
  const entries = [...overrides]
    .sort(([a], [b]) => a - b)
    .map(([code, value]) => `  [0x${code.toString(16)}, ${quote(value)}],`);
  return `// Generated by \`npm run nodeprep-table\` (scripts/nodeprep-table.ts): do not edit.
//
// From p1_stringprep ${version}, the stringprep NIF of Debian's ejabberd 23.01 (Unicode 3.2
// tables): for every code point U+0000-U+10FFFF that its nodeprep or nameprep accepts and
// prepares differently from prepCodePointByRuntime (B.1 dropped, NFKC, lower case, NFKC with
// this runtime's tables), the code point and ejabberd's result. prepJidPart maps each code point
// through this table or else prepCodePointByRuntime, then applies NFKC to the whole string.

/** The p1_stringprep version this table was generated from. */
export const NODEPREP_TABLE_VERSION = ${quote(version)};

/** Code point -> ejabberd's nodeprep (and nameprep) of it, where this runtime differs. */
export const NODEPREP_OVERRIDES: ReadonlyMap<number, string> = new Map([
${entries.join("\n")}
]);
`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const table = ejabberdOverrides();
  writeFileSync(OVERRIDES_PATH, renderOverrides(table));
  process.stdout.write(
    `wrote ${OVERRIDES_PATH}: ${table.overrides.size} code points, p1_stringprep ${table.version}\n`,
  );
}
