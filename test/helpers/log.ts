import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/logger.js";

/** One line the logger wrote, parsed: pino's fields (`msg`, `level`, …) and the bindings. */
export type LogLine = Record<string, unknown> & { msg: string; level: number };

/** A logger at `level` whose lines, parsed, are collected in `lines` as they are written. */
export function capturingLogger(level = "info"): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) {
        if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  return { logger: createLogger(level, sink), lines };
}
