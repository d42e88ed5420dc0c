/**
 * Inline SVG charts for the eval report, readable without scripts, hover or colour alone: every bar has
 * its value printed, axes have titles, units and ticks, a value of 0 is drawn as a marked baseline and a
 * missing value as "n/a", and each metric keeps one colour ({@link METRIC_COLORS}) on the whole page.
 * Charts are fluid (`viewBox`, `width: 100%`) down to a minimum width under which their container scrolls.
 * @module
 */

/** Escapes text for HTML / SVG. */
export function escapeHtml(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/** One colour per metric, the same in every chart, table swatch and heatmap of a report. */
export const METRIC_COLORS: Readonly<Record<string, string>> = {
  rewrite_acc: "#4e79a7",
  rephrase_acc: "#76b7b2",
  locality: "#59a14f",
  portability: "#edc948",
  ES: "#e15759",
  PS: "#f28e2b",
  NS: "#b07aa1",
  S: "#7f7f7f",
};

/** A general palette for series that are not metrics (runs, diagnostics). */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#e15759",
  "#76b7b2",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
];

/** Short display names of the metrics in charts (the tables use the full names). */
export const METRIC_LABELS: Readonly<Record<string, string>> = {
  rewrite_acc: "rewrite",
  rephrase_acc: "rephrase",
  locality: "locality",
  portability: "portab.",
};

function label(m: string): string {
  return METRIC_LABELS[m] ?? m;
}

/** The colour of a metric (palette fallback for unknown names). */
export function metricColor(m: string): string {
  return METRIC_COLORS[m] ?? PALETTE[[...m].reduce((a, c) => a + c.charCodeAt(0), 0) % PALETTE.length];
}

/** A tick label: 3 significant digits, exponent notation outside [0.01, 1000). */
export function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

function open(w: number, h: number, title: string, minScale = 0.75): string {
  const min = Math.round(Math.min(w, Math.max(300, w * minScale)));
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" style="min-width:${min}px" role="img" aria-label="${
    escapeHtml(title)
  }"><title>${escapeHtml(title)}</title>`;
}

const f1 = (x: number) => x.toFixed(1);

/** "Nice" ticks from 0 to at least `max`: 0, step, 2·step, … with step 1, 2 or 5 × 10^k. */
export function niceTicks(max: number, target = 4): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / target, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = 0; v < max + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** One group of a grouped bar chart. */
export interface BarGroup {
  /** The group's label (x axis). */
  label: string;
  /** One value per series (NaN / undefined: not applicable, drawn as "n/a"). */
  values: (number | undefined)[];
  /** Optional 95 % interval per series, drawn as a whisker. */
  intervals?: ([number, number] | undefined)[];
}

/** Options of {@link svgBarChart}. */
export interface BarOptions {
  /** Top of the y axis (default: 1.1 × the largest value or interval end). */
  yMax?: number;
  /** Unit appended to the y ticks, e.g. "%". */
  unit?: string;
  /** y axis title. */
  yLabel?: string;
  /** Width in px (default from the number of bars). */
  width?: number;
  /**
   * `series` (default): each series its own palette colour, with a legend. `group`: each group in its
   * metric's colour ({@link metricColor}); series are told apart by shade and by the short labels under
   * the bars (`seriesShort`), explained by the legend.
   */
  colorBy?: "series" | "group";
  /** Short series labels under each bar (colorBy group), e.g. ["pre", "post"] or ["A", "B"]. */
  seriesShort?: string[];
  /** Decimals of the printed values (default 0 for "%", else 2 significant digits). */
  decimals?: number;
}

const SHADES = [0.35, 1, 0.7, 0.55, 0.85];

/** Lays out legend entries left to right, wrapping at `width`. */
function legend(
  entries: { name: string; color: string; opacity?: number }[],
  x0: number,
  width: number,
): { parts: (y: number) => string[]; rows: number } {
  const pos: [number, number][] = [];
  let x = x0, row = 0;
  for (const e of entries) {
    const w = 26 + 6.6 * e.name.length;
    if (x > x0 && x + w > width) x = x0, row++;
    pos.push([x, row]);
    x += w;
  }
  return {
    rows: entries.length ? row + 1 : 0,
    parts: (y: number) =>
      entries.flatMap((e, i) => {
        const [lx, r] = pos[i], ly = y + r * 18;
        return [
          `<rect x="${f1(lx)}" y="${ly}" width="11" height="11" fill="${e.color}" fill-opacity="${
            e.opacity ?? 1
          }" stroke="#555" stroke-width="0.5"/>`,
          `<text x="${f1(lx + 15)}" y="${ly + 10}" class="tick">${escapeHtml(e.name)}</text>`,
        ];
      }),
  };
}

/**
 * A grouped bar chart on [0, yMax]: values printed above the bars, optional CI whiskers, a 0 drawn as a
 * thick baseline mark with "0" above it, a missing value written "n/a".
 */
export function svgBarChart(
  title: string,
  series: string[],
  groups: BarGroup[],
  opts: BarOptions = {},
): string {
  const byGroup = opts.colorBy === "group";
  const bwNat = 28;
  const W = opts.width ?? Math.max(360, 70 + groups.length * Math.max(84, series.length * bwNat + 16));
  const L = 56, R = 10, T = 30;
  const entries = byGroup
    ? series.map((s, i) => {
      const sh = opts.seriesShort?.[i];
      return { name: sh && sh !== s ? `${sh}: ${s}` : s, color: "#666", opacity: SHADES[i % 5] };
    })
    : series.map((s, i) => ({ name: s, color: PALETTE[i % PALETTE.length] }));
  const leg = legend(entries, L, W - R);
  const short = byGroup && opts.seriesShort ? 14 : 0;
  const B = 34 + short + 18 * leg.rows, H = 210 + B;
  const tops = groups.flatMap((g) => [
    ...g.values.filter((v): v is number => v !== undefined && Number.isFinite(v)),
    ...(g.intervals ?? []).flatMap((iv) => iv && Number.isFinite(iv[1]) ? [iv[1]] : []),
  ]);
  const yMax = opts.yMax ?? (tops.length ? Math.max(...tops) * 1.1 || 1 : 1);
  const y = (v: number) => T + (H - T - B) * (1 - Math.max(0, Math.min(v, yMax)) / yMax);
  const gw = (W - L - R) / Math.max(1, groups.length);
  const bw = Math.min(bwNat, (gw - 8) / Math.max(1, series.length));
  const unit = opts.unit ?? "";
  const dec = (v: number) =>
    opts.decimals !== undefined ? v.toFixed(opts.decimals) : unit === "%" ? v.toFixed(0) : fmtTick(v);
  const parts: string[] = [
    open(W, H, title),
    `<text x="${W / 2}" y="17" text-anchor="middle" class="title">${escapeHtml(title)}</text>`,
  ];
  for (const v of niceTicks(yMax).filter((t) => t <= yMax + 1e-9)) {
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${f1(y(v))}" y2="${f1(y(v))}" class="grid"/>`,
      `<text x="${L - 5}" y="${f1(y(v) + 4)}" text-anchor="end" class="tick">${fmtTick(v)}${unit}</text>`,
    );
  }
  if (opts.yLabel) {
    const cy = (T + H - B) / 2;
    parts.push(
      `<text x="13" y="${f1(cy)}" transform="rotate(-90 13 ${
        f1(cy)
      })" text-anchor="middle" class="axis-title">${escapeHtml(opts.yLabel)}</text>`,
    );
  }
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${f1(y(0))}" y2="${f1(y(0))}" class="axis"/>`);
  groups.forEach((g, gi) => {
    const x0 = L + gi * gw + (gw - bw * series.length) / 2;
    const color = metricColor(g.label);
    g.values.forEach((v, si) => {
      const x = x0 + si * bw, cx = x + (bw - 2) / 2;
      const fill = byGroup ? color : PALETTE[si % PALETTE.length];
      const op = byGroup ? SHADES[si % 5] : 1;
      if (short) {
        parts.push(
          `<text x="${f1(cx)}" y="${f1(y(0) + 12)}" text-anchor="middle" class="short">${
            escapeHtml(opts.seriesShort![si] ?? "")
          }</text>`,
        );
      }
      if (v === undefined || !Number.isFinite(v)) {
        parts.push(`<text x="${f1(cx)}" y="${f1(y(0) - 4)}" text-anchor="middle" class="na">n/a</text>`);
        return;
      }
      const iv = g.intervals?.[si];
      parts.push(
        `<rect x="${f1(x)}" y="${f1(y(v))}" width="${f1(bw - 2)}" height="${
          f1(y(0) - y(v))
        }" fill="${fill}" fill-opacity="${op}" stroke="${fill}"><title>${
          escapeHtml(
            `${g.label} · ${series[si]}: ${dec(v)}${unit}${
              iv ? ` (95 % CI ${dec(iv[0])}–${dec(iv[1])}${unit})` : ""
            }`,
          )
        }</title></rect>`,
      );
      if (v === 0) {
        parts.push(
          `<line x1="${f1(x)}" x2="${f1(x + bw - 2)}" y1="${f1(y(0))}" y2="${f1(y(0))}" class="zero"/>`,
        );
      }
      let top = y(v);
      if (iv && Number.isFinite(iv[0]) && Number.isFinite(iv[1])) {
        const [a, b] = [y(iv[0]), y(iv[1])];
        parts.push(
          `<path d="M${f1(cx)} ${f1(a)}V${f1(b)}M${f1(cx - 4)} ${f1(a)}h8M${f1(cx - 4)} ${
            f1(b)
          }h8" class="whisker"/>`,
        );
        top = Math.min(top, b);
      }
      parts.push(`<text x="${f1(cx)}" y="${f1(top - 4)}" text-anchor="middle" class="val">${dec(v)}</text>`);
    });
    parts.push(
      `<text x="${f1(L + gi * gw + gw / 2)}" y="${
        f1(H - B + 16 + short)
      }" text-anchor="middle" class="tick">${escapeHtml(label(g.label))}</text>`,
    );
  });
  parts.push(...leg.parts(H - B + 28 + short), `</svg>`);
  return parts.join("");
}

/** Options of {@link svgHistogram}. */
export interface HistogramOptions {
  /** Number of bins (default 10). */
  bins?: number;
  /** The range of the bins (default: the values' range). */
  domain?: [number, number];
  /** Bar colour. */
  color?: string;
  /** x axis title, with its unit, e.g. "‖ΔW‖ / ‖W‖ (ratio)". */
  xLabel?: string;
  /** Records without the quantity (shown in the title as "k n/a"). */
  missing?: number;
}

/**
 * A histogram: x axis title and bin-edge ticks, y axis "records" with integer ticks, each non-empty bin's
 * count printed on it.
 */
export function svgHistogram(title: string, values: readonly number[], opts: HistogramOptions = {}): string {
  const W = 360, H = 230, L = 44, R = 22, T = 30, B = 52;
  const v = values.filter(Number.isFinite);
  const bins = opts.bins ?? 10;
  let [lo, hi] = opts.domain ?? (v.length ? [Math.min(...v), Math.max(...v)] : [0, 1]);
  if (!(hi > lo)) [lo, hi] = [lo - 0.5, hi + 0.5];
  const counts = new Array(bins).fill(0);
  for (const x of v) counts[Math.min(bins - 1, Math.max(0, Math.floor(((x - lo) / (hi - lo)) * bins)))]++;
  const ticks = niceTicks(Math.max(1, ...counts), 3).filter((t) => Number.isInteger(t));
  const cMax = 1.12 * Math.max(1, ...counts, ...ticks); // headroom for the printed counts
  const bw = (W - L - R) / bins;
  const Y = (c: number) => H - B - ((H - T - B) * c) / cMax;
  const na = opts.missing ? `, ${opts.missing} n/a` : "";
  const parts = [
    open(W, H, title),
    `<text x="${W / 2}" y="17" text-anchor="middle" class="title">${
      escapeHtml(title)
    } (n=${v.length}${na})</text>`,
  ];
  for (const t of ticks) {
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${f1(Y(t))}" y2="${f1(Y(t))}" class="grid"/>`,
      `<text x="${L - 5}" y="${f1(Y(t) + 4)}" text-anchor="end" class="tick">${t}</text>`,
    );
  }
  const cy = (T + H - B) / 2;
  parts.push(
    `<text x="12" y="${f1(cy)}" transform="rotate(-90 12 ${
      f1(cy)
    })" text-anchor="middle" class="axis-title">records</text>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" class="axis"/>`,
  );
  counts.forEach((c, i) => {
    const x = L + i * bw, a = lo + (i * (hi - lo)) / bins, b = lo + ((i + 1) * (hi - lo)) / bins;
    parts.push(
      `<rect x="${f1(x + 1)}" y="${f1(Y(c))}" width="${f1(bw - 2)}" height="${f1(Y(0) - Y(c))}" fill="${
        opts.color ?? PALETTE[0]
      }"><title>${fmtTick(a)} – ${fmtTick(b)}: ${c}</title></rect>`,
    );
    if (c > 0) {
      parts.push(
        `<text x="${f1(x + bw / 2)}" y="${f1(Y(c) - 3)}" text-anchor="middle" class="val">${c}</text>`,
      );
    }
  });
  const every = bins > 5 ? 2 : 1;
  for (let i = 0; i <= bins; i += every) {
    const x = L + i * bw;
    parts.push(
      `<line x1="${f1(x)}" x2="${f1(x)}" y1="${H - B}" y2="${H - B + 4}" class="axis"/>`,
      `<text x="${f1(x)}" y="${H - B + 16}" text-anchor="middle" class="tick">${
        fmtTick(lo + (i * (hi - lo)) / bins)
      }</text>`,
    );
  }
  if (opts.xLabel) {
    parts.push(
      `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle" class="axis-title">${
        escapeHtml(opts.xLabel)
      }</text>`,
    );
  }
  parts.push(`</svg>`);
  return parts.join("");
}

/** A line series. */
export interface LineSeries {
  /** Legend name. */
  name: string;
  /** [x, y] points in x order. */
  points: [number, number][];
  /** Colour (default: the palette in order). */
  color?: string;
  /** Dashed line (e.g. the final-model series). */
  dashed?: boolean;
}

/** A line chart, y on [0, yMax] (default 1), with axis titles and ticks. */
export function svgLineChart(
  title: string,
  series: LineSeries[],
  opts: { xLabel?: string; yLabel?: string; yMax?: number; unit?: string } = {},
): string {
  const W = 560, L = 56, R = 14, T = 30;
  const leg = legend(
    series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length] })),
    L,
    W - R,
  );
  const B = 50 + 18 * leg.rows, H = 220 + B;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const yMax = opts.yMax ?? 1;
  const X = (x: number) => L + ((W - L - R) * (x - x0)) / (x1 > x0 ? x1 - x0 : 1);
  const Y = (y: number) => T + (H - T - B) * (1 - Math.max(0, Math.min(y, yMax)) / yMax);
  const parts = [
    open(W, H, title),
    `<text x="${W / 2}" y="17" text-anchor="middle" class="title">${escapeHtml(title)}</text>`,
  ];
  for (const v of niceTicks(yMax).filter((t) => t <= yMax + 1e-9)) {
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${f1(Y(v))}" y2="${f1(Y(v))}" class="grid"/>`,
      `<text x="${L - 5}" y="${f1(Y(v) + 4)}" text-anchor="end" class="tick">${fmtTick(v)}${
        opts.unit ?? ""
      }</text>`,
    );
  }
  const xt = niceTicks(Math.max(1, x1), 5).filter((t) => t >= x0 && t <= x1);
  for (const t of xt.length ? xt : [x0, x1]) {
    parts.push(
      `<line x1="${f1(X(t))}" x2="${f1(X(t))}" y1="${f1(Y(0))}" y2="${f1(Y(0) + 4)}" class="axis"/>`,
      `<text x="${f1(X(t))}" y="${f1(Y(0) + 16)}" text-anchor="middle" class="tick">${fmtTick(t)}</text>`,
    );
  }
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${f1(Y(0))}" y2="${f1(Y(0))}" class="axis"/>`);
  if (opts.xLabel) {
    parts.push(
      `<text x="${(L + W - R) / 2}" y="${f1(Y(0) + 34)}" text-anchor="middle" class="axis-title">${
        escapeHtml(opts.xLabel)
      }</text>`,
    );
  }
  if (opts.yLabel) {
    const cy = (T + H - B) / 2;
    parts.push(
      `<text x="13" y="${f1(cy)}" transform="rotate(-90 13 ${
        f1(cy)
      })" text-anchor="middle" class="axis-title">${escapeHtml(opts.yLabel)}</text>`,
    );
  }
  series.forEach((s, si) => {
    const c = s.color ?? PALETTE[si % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) return;
    parts.push(
      `<polyline fill="none" stroke="${c}" stroke-width="2"${
        s.dashed ? ' stroke-dasharray="6 4"' : ""
      } points="${pts.map(([x, y]) => `${f1(X(x))},${f1(Y(y))}`).join(" ")}"><title>${
        escapeHtml(s.name)
      }</title></polyline>`,
    );
    const [lx, ly] = pts[pts.length - 1];
    parts.push(
      `<circle cx="${f1(X(lx))}" cy="${f1(Y(ly))}" r="3" fill="${c}"/>`,
      `<text x="${f1(X(lx) - 4)}" y="${f1(Y(ly) - 6)}" text-anchor="end" class="val">${fmtTick(ly)}${
        opts.unit ?? ""
      }</text>`,
    );
  });
  parts.push(...leg.parts(H - B + 44), `</svg>`);
  return parts.join("");
}

/** One row of a {@link svgHeatmap}. */
export interface HeatRow {
  /** Row label (e.g. "#3 Danielle Darrieux"). */
  label: string;
  /** One value in [0, 1] per column, undefined where not applicable. */
  cells: (number | undefined)[];
  /** A note after the label (e.g. "edit failed"). */
  note?: string;
}

/**
 * A records × metrics pass/fail grid: a cell is filled in its metric's colour with opacity = its value and
 * marked ✓ (1), ✗ (0) or with the fraction; a grey hatched cell marked "n/a" has no such prompts.
 */
export function svgHeatmap(title: string, columns: string[], rows: HeatRow[]): string {
  const cw = 64, ch = 20, L = 200, T = 48, R = 8, B = 6;
  const W = L + cw * columns.length + R, H = T + ch * rows.length + B;
  const parts = [
    open(W, H, title, 1),
    `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f3f3"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ccc" stroke-width="2"/></pattern></defs>`,
    `<text x="8" y="17" class="title">${escapeHtml(title)}</text>`,
  ];
  columns.forEach((c, j) => {
    parts.push(
      `<rect x="${L + j * cw + 2}" y="${T - 22}" width="${cw - 4}" height="5" fill="${metricColor(c)}"/>`,
      `<text x="${L + j * cw + cw / 2}" y="${T - 6}" text-anchor="middle" class="tick">${
        escapeHtml(label(c))
      }</text>`,
    );
  });
  rows.forEach((r, i) => {
    const y = T + i * ch;
    const label = r.label.length > 28 ? `${r.label.slice(0, 27)}…` : r.label;
    parts.push(
      `<text x="${L - 6}" y="${y + 14}" text-anchor="end" class="tick${r.note ? " warn" : ""}">${
        escapeHtml(label + (r.note ? ` (${r.note})` : ""))
      }</text>`,
    );
    r.cells.forEach((v, j) => {
      const x = L + j * cw;
      const col = metricColor(columns[j]);
      if (v === undefined || !Number.isFinite(v)) {
        parts.push(
          `<rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" fill="url(#hatch)"/>`,
          `<text x="${x + cw / 2}" y="${y + 14}" text-anchor="middle" class="na">n/a</text>`,
        );
        return;
      }
      const mark = v === 1 ? "✓" : v === 0 ? "✗" : v.toFixed(2);
      parts.push(
        `<rect x="${x + 1}" y="${y + 1}" width="${cw - 2}" height="${ch - 2}" fill="${col}" fill-opacity="${
          (0.12 + 0.88 * v).toFixed(2)
        }" stroke="${col}"><title>${escapeHtml(`${r.label} · ${columns[j]}: ${fmtTick(v)}`)}</title></rect>`,
        `<text x="${x + cw / 2}" y="${y + 14}" text-anchor="middle" class="${
          v > 0.6 ? "cell-dark" : "cell"
        }">${mark}</text>`,
      );
    });
  });
  parts.push(`</svg>`);
  return parts.join("");
}
