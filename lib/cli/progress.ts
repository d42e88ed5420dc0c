/**
 * A progress line on stderr with rate and ETA (redrawn in place on a terminal, printed every few seconds
 * otherwise).
 * @module
 */

/** Options for {@link Progress}. */
export interface ProgressOptions {
  /** Unit name for the rate, e.g. "tok" or "rec". */
  unit?: string;
  /** Silence output. */
  quiet?: boolean;
}

/** Formats seconds as 1h02m, 3m05s or 4.2s. */
function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${s.toFixed(1)}s`;
}

/** A progress reporter for long work. */
export class Progress {
  readonly label: string;
  /** Total units (may be corrected once known). */
  total: number;
  done: number;
  #start = performance.now();
  #startDone: number;
  #last = 0;
  #unit: string;
  #quiet: boolean;
  #tty: boolean;

  /** `done` may start above 0 when resuming; the rate counts only this run's work. */
  constructor(label: string, total: number, done = 0, opts: ProgressOptions = {}) {
    this.label = label;
    this.total = total;
    this.done = done;
    this.#startDone = done;
    this.#unit = opts.unit ?? "it";
    this.#quiet = opts.quiet ?? false;
    this.#tty = Deno.stderr.isTerminal();
  }

  /** Adds `n` units of progress and redraws when due. */
  tick(n = 1, extra = ""): void {
    this.done += n;
    const now = performance.now();
    if (this.#quiet) return;
    if (now - this.#last < (this.#tty ? 200 : 5000) && this.done < this.total) return;
    this.#last = now;
    this.#draw(extra);
  }

  #draw(extra: string): void {
    const el = (performance.now() - this.#start) / 1000;
    const rate = (this.done - this.#startDone) / Math.max(el, 1e-9);
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const frac = this.total ? this.done / this.total : 1;
    const width = 24, fill = Math.round(frac * width);
    const bar = "#".repeat(fill) + "-".repeat(width - fill);
    const line = `${this.label} [${bar}] ${this.done}/${this.total} ${rate.toFixed(1)} ${this.#unit}/s ETA ${
      formatDuration(eta)
    }${extra ? " " + extra : ""}`;
    const enc = new TextEncoder();
    Deno.stderr.writeSync(enc.encode(this.#tty ? `\r\x1b[K${line}` : `${line}\n`));
  }

  /** Final line. */
  finish(extra = ""): void {
    if (this.#quiet) return;
    this.#draw(extra);
    if (this.#tty) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
  }
}
