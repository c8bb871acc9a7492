/**
 * Small SVG charts for the benchmark report: a line chart (a value by a
 * numeric x, one line a series) and a horizontal bar chart. Plain SVG text,
 * so the report renders on any Markdown viewer without a script.
 */

export interface Series {
  name: string;
  points: Array<[x: number, y: number]>;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Logarithmic x axis, for rates that double at each step. */
  logX?: boolean;
  /** Logarithmic y axis, for latencies that span several orders of magnitude. */
  logY?: boolean;
  /** A horizontal reference line, e.g. a latency target. */
  limit?: { y: number; label: string };
}

export interface Bar {
  label: string;
  value: number;
  /** Text shown after the bar; the value with its unit when absent. */
  note?: string;
}

export interface BarChartOptions {
  title: string;
  unit: string;
  bars: Bar[];
}

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const WIDTH = 720;
const HEIGHT = 400;
const MARGIN = { top: 40, right: 170, bottom: 50, left: 80 };

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c] ?? c);
}

/** Rounds for a label: integers stay whole, small values keep two significant digits. */
export function formatNumber(value: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e4) return `${trim(value / 1e3)}k`;
  if (abs >= 100) return Math.round(value).toString();
  return Number(value.toPrecision(2)).toString();
}

function trim(value: number): string {
  return Number(value.toPrecision(3)).toString();
}

/** Ticks over [min, max]: powers of ten (and 2, 5 between) on a log axis, round steps otherwise. */
function ticks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let decade = Math.floor(Math.log10(min)); decade <= Math.ceil(Math.log10(max)); decade++) {
      for (const factor of [1, 2, 5]) {
        const value = factor * 10 ** decade;
        if (value >= min * 0.999 && value <= max * 1.001) out.push(value);
      }
    }
    return out;
  }
  const rough = (max - min) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough || 1));
  const step = [1, 2, 5, 10].map((f) => f * magnitude).find((s) => s >= rough) ?? rough;
  const out: number[] = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    out.push(Number(value.toPrecision(12)));
  }
  return out;
}

function scale(min: number, max: number, log: boolean, from: number, to: number) {
  if (log) {
    const lo = Math.log10(min);
    const span = Math.log10(max) - lo || 1;
    return (value: number) => from + ((Math.log10(value) - lo) / span) * (to - from);
  }
  const span = max - min || 1;
  return (value: number) => from + ((value - min) / span) * (to - from);
}

function frame(title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

/** Draws a line chart; series without points are left out, and an empty chart shows "no data". */
export function lineChart(options: LineChartOptions): string {
  const series = options.series.filter((s) => s.points.length > 0);
  const xs = series.flatMap((s) => s.points.map(([x]) => x));
  const ys = series.flatMap((s) => s.points.map(([, y]) => y));
  if (options.limit) ys.push(options.limit.y);
  if (xs.length === 0) {
    return frame(options.title, [`<text x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle">no data</text>`]);
  }
  const logX = options.logX === true && Math.min(...xs) > 0;
  const logY = options.logY === true && Math.min(...ys) > 0;
  const xMin = logX ? Math.min(...xs) : Math.min(0, ...xs);
  const xMax = Math.max(...xs);
  const yMin = logY ? Math.min(...ys) / 1.5 : 0;
  const yMax = logY ? Math.max(...ys) * 1.5 : Math.max(...ys) * 1.1 || 1;
  const left = MARGIN.left;
  const right = WIDTH - MARGIN.right;
  const top = MARGIN.top;
  const bottom = HEIGHT - MARGIN.bottom;
  const x = scale(xMin, xMax, logX, left, right);
  const y = scale(yMin, yMax, logY, bottom, top);

  const body: string[] = [
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="black"/>`,
  ];
  for (const tick of ticks(xMin || 1, xMax, logX)) {
    const px = x(tick).toFixed(1);
    body.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 4}" stroke="black"/>`);
    body.push(`<text x="${px}" y="${bottom + 17}" text-anchor="middle">${formatNumber(tick)}</text>`);
  }
  for (const tick of ticks(yMin || yMax / 1000, yMax, logY)) {
    const py = y(tick).toFixed(1);
    body.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#ddd"/>`);
    body.push(`<text x="${left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${formatNumber(tick)}</text>`);
  }
  body.push(`<text x="${(left + right) / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  body.push(
    `<text x="18" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(top + bottom) / 2})">${escapeXml(options.yLabel)}</text>`,
  );
  if (options.limit) {
    const py = y(options.limit.y).toFixed(1);
    body.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#888" stroke-dasharray="6 4"/>`);
    body.push(`<text x="${right - 4}" y="${Number(py) - 5}" text-anchor="end" fill="#555">${escapeXml(options.limit.label)}</text>`);
  }
  series.forEach((s, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    const path = points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(" ");
    body.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const [px, py] of points) {
      body.push(`<circle cx="${x(px).toFixed(1)}" cy="${y(py).toFixed(1)}" r="3" fill="${colour}"/>`);
    }
    const legendY = top + 10 + index * 20;
    body.push(`<line x1="${right + 15}" y1="${legendY}" x2="${right + 35}" y2="${legendY}" stroke="${colour}" stroke-width="2"/>`);
    body.push(`<text x="${right + 40}" y="${legendY}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  return frame(options.title, body);
}

/** Draws a horizontal bar chart, one bar a row, scaled to the largest value. */
export function barChart(options: BarChartOptions): string {
  const bars = options.bars;
  if (bars.length === 0) {
    return frame(options.title, [`<text x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle">no data</text>`]);
  }
  const left = 150;
  const right = WIDTH - 150;
  const top = MARGIN.top + 5;
  const rowHeight = Math.min(40, (HEIGHT - top - 20) / bars.length);
  const max = Math.max(...bars.map((b) => b.value)) || 1;
  const body: string[] = [];
  bars.forEach((bar, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const rowY = top + index * rowHeight;
    const width = Math.max(1, ((right - left) * bar.value) / max);
    const middle = rowY + rowHeight / 2;
    body.push(`<text x="${left - 8}" y="${middle.toFixed(1)}" text-anchor="end" dominant-baseline="middle">${escapeXml(bar.label)}</text>`);
    body.push(`<rect x="${left}" y="${(rowY + 4).toFixed(1)}" width="${width.toFixed(1)}" height="${(rowHeight - 8).toFixed(1)}" fill="${colour}"/>`);
    const note = bar.note ?? `${formatNumber(bar.value)} ${options.unit}`;
    body.push(`<text x="${(left + width + 6).toFixed(1)}" y="${middle.toFixed(1)}" dominant-baseline="middle">${escapeXml(note)}</text>`);
  });
  return frame(options.title, body);
}
