import type { Store } from "../src/store/db.js";
import type { EjabberdInstance } from "../test/helpers/ejabberd.js";

/** One measured number. `baseline` marks the figure a ratio is taken against. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  note?: string;
}

/** `value` = figure / baseline, both measured in the same run. */
export interface Ratio {
  name: string;
  value: number;
  figure: string;
  baseline: string;
}

export interface Target {
  figure: string;
  /** the figure must be at least (">=") or at most ("<=") the value */
  op: ">=" | "<=";
  value: number;
  met: boolean;
}

export interface ScenarioResult {
  /** the sizes the run used, after BENCH_SCALE */
  params: Record<string, number | string>;
  figures: Figure[];
  ratios: Ratio[];
  targets: Target[];
  /** what the figures mean, the choice of baseline, and anything that bent the run */
  notes: string[];
}

export interface BenchDatabase {
  url: string;
  /** a migrated syncside store on it */
  store: Store;
}

export interface BenchContext {
  /** BENCH_SCALE (default 1): every size goes through sized() */
  scale: number;
  sized(full: number, min?: number): number;
  /** The bench's private ejabberd, started on first use and stopped at the end of the run. */
  ejabberd(): Promise<EjabberdInstance>;
  /** A fresh, migrated PostgreSQL database, dropped when the scenario ends. */
  postgres(): Promise<BenchDatabase>;
  /** A fresh PGlite store in a temporary directory, removed when the scenario ends. */
  pglite(): Promise<BenchDatabase>;
  /** Runs at the end of the scenario, last registered first, also after a failure. */
  defer(cleanup: () => Promise<void> | void): void;
  /** One line of progress on stderr (the result table goes to stdout). */
  progress(message: string): void;
  /** Aborted on Ctrl-C: long loops should stop early. */
  signal: AbortSignal;
}

export interface Scenario {
  name: string;
  description: string;
  /** the scale when neither BENCH_SCALE nor BENCH_SCALE_<NAME> is set (full size takes too long) */
  defaultScale?: number;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

/** Builds a ratio and a target from named figures, so scenarios state them declaratively. */
export function ratioOf(figures: Figure[], name: string, figure: string, baseline: string): Ratio {
  const a = figures.find((f) => f.name === figure)?.value ?? Number.NaN;
  const b = figures.find((f) => f.name === baseline)?.value ?? Number.NaN;
  return { name, value: a / b, figure, baseline };
}

export function targetOf(
  figures: Figure[],
  figure: string,
  op: Target["op"],
  value: number,
): Target {
  const actual = figures.find((f) => f.name === figure)?.value ?? Number.NaN;
  return { figure, op, value, met: op === ">=" ? actual >= value : actual <= value };
}
