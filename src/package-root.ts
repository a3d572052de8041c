import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** The directory holding package.json, whether running from src/ (tsx) or dist/ (node). */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "drizzle"))) {
      cached = dir;
      return dir;
    }
    dir = dirname(dir);
  }
  throw new Error("syncside's package root (package.json + drizzle/) not found");
}
