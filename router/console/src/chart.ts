// chart.ts — time-series charts with uPlot. uPlot draws on one canvas,
// keeps the data in flat typed arrays and is about 50 KB minified: 1000
// series x 360 points (360k points) draw in tens of milliseconds, where
// SVG/DOM chart libraries build one element per point or path and are
// several times larger (vmui chose it for the same reasons). Its legend
// gives hover values and click-to-toggle of each series.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export interface ChartSeries { label: string; values: (number | null)[]; }

function axisColor(): string {
  return getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#888';
}
function gridColor(): string {
  return getComputedStyle(document.documentElement).getPropertyValue('--grid').trim() || 'rgba(0,0,0,.1)';
}

const LEGEND_MANY = 50;  // above: the compact legend below
const LEGEND_FIRST = 100; // entries of the compact legend drawn at once

// Above LEGEND_MANY series uPlot's table legend (a row per series, updated
// on every mouse move) costs more than the chart: a compact legend of
// buttons instead (the first LEGEND_FIRST, the rest on demand; a click
// hides or shows a series) and one hover line for the series nearest the
// cursor.
function compactLegend(host: HTMLElement, u: uPlot, series: ChartSeries[]): void {
  const hover = document.createElement('div');
  hover.className = 'legend-note mono';
  hover.id = 'chart-hover';
  hover.textContent = series.length + ' series: hover a line for its value; click an entry to hide or show it.';
  const box = document.createElement('div');
  box.className = 'u-legend compact';
  const add = (from: number, to: number) => {
    const frag = document.createDocumentFragment();
    for (let i = from; i < to; i++) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'u-series';
      b.style.borderLeft = '10px solid ' + PALETTE[i % PALETTE.length];
      b.textContent = series[i].label;
      b.onclick = () => {
        const show = !u.series[i + 1].show;
        u.setSeries(i + 1, { show });
        b.classList.toggle('u-off', !show);
      };
      frag.append(b);
    }
    box.append(frag);
  };
  add(0, Math.min(LEGEND_FIRST, series.length));
  if (series.length > LEGEND_FIRST) {
    const more = document.createElement('button');
    more.type = 'button';
    more.textContent = `show all ${series.length}`;
    more.onclick = () => { more.remove(); add(LEGEND_FIRST, series.length); };
    box.append(more);
  }
  host.append(hover, box);
  let focused: number | null = null;
  const show = () => {
    const idx = u.cursor.idx;
    if (focused === null || idx === null || idx === undefined) return;
    const v = u.data[focused][idx];
    hover.textContent = new Date((u.data[0][idx] as number) * 1000).toLocaleString() + '  ' + series[focused - 1].label + ' = ' + (v === null ? '—' : v);
  };
  u.hooks.setSeries = [(_u: uPlot, i: number | null) => { if (i !== null) { focused = i; show(); } }];
  u.hooks.setCursor = [() => show()];
}

// Draw into host (replacing what was there); returns the chart.
export function drawChart(host: HTMLElement, xs: number[], series: ChartSeries[], height = 340): uPlot {
  host.textContent = '';
  const width = Math.max(320, host.clientWidth || 1000);
  const many = series.length > LEGEND_MANY;
  const opts: uPlot.Options = {
    width,
    height,
    legend: { show: !many },
    cursor: { focus: { prox: 16 }, drag: { x: true, y: false } },
    focus: { alpha: 0.3 },
    scales: { x: { time: true } },
    axes: [
      { stroke: axisColor(), grid: { stroke: gridColor() }, ticks: { stroke: gridColor() } },
      { stroke: axisColor(), grid: { stroke: gridColor() }, ticks: { stroke: gridColor() }, size: 60 },
    ],
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1,
        spanGaps: false,
        points: { show: false },
      })),
    ],
  };
  const data: uPlot.AlignedData = [xs, ...series.map((s) => s.values)] as any;
  const u = new uPlot(opts, data, host);
  if (many) compactLegend(host, u, series);
  host.dataset.series = String(series.length);
  return u;
}
