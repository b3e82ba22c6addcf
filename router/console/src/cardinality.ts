// cardinality.ts — the Cardinality page: /api/v1/status/tsdb's top
// metrics, label names (by distinct values), label-value pairs (by series)
// and label sizes, narrowed by a selector; clicking a metric opens it on
// the Query page, clicking a label-value pair narrows the view to it. The
// series count over time comes from the router's own samples of the
// nodes' STATS (/api/v1/status/nodes series_history).
import { api, errorText } from './api';
import { drawChart } from './chart';
import { el, fmtBytes, fmtNum } from './util';

let chartObj: any = null;

export function stopCardinality(): void {
  if (chartObj) { chartObj.destroy(); chartObj = null; }
}

function table(id: string, title: string, rows: { name: string; value: number }[], fmt: (v: number) => string, onPick?: (name: string) => void): HTMLElement {
  const max = rows.reduce((m, r) => Math.max(m, r.value), 1);
  const tb = el('tbody');
  for (const r of rows) {
    const tr = el('tr', { class: onPick ? 'click' : '', tabindex: onPick ? 0 : undefined, 'data-name': r.name },
      el('td', { class: 'mono' }, r.name),
      el('td', { class: 'num' }, fmt(r.value)),
      el('td', { style: 'width:30%' }, el('div', { class: 'bar', style: `width:${(100 * r.value) / max}%` })));
    if (onPick) {
      tr.onclick = () => onPick(r.name);
      tr.onkeydown = (e: KeyboardEvent) => { if (e.key === 'Enter') onPick(r.name); };
    }
    tb.append(tr);
  }
  return el('div', { class: 'card' }, el('h3', {}, title), el('table', { id }, el('thead', {}, el('tr', {}, el('th', {}, 'name'), el('th', { class: 'num' }, 'value'), el('th', {}))), tb));
}

export function renderCardinality(main: HTMLElement, params: URLSearchParams, go: (hash: string) => void): void {
  stopCardinality();
  main.textContent = '';
  const match = el('input', { id: 'card-match', size: 50, placeholder: 'selector, e.g. {job="api"} (empty: every series)', 'aria-label': 'Selector filter', value: params.get('match') || '' }) as HTMLInputElement;
  const limit = el('select', { id: 'card-limit', 'aria-label': 'Entries per list' }, ...['10', '20', '50', '100'].map((v) => el('option', { value: v }, 'top ' + v))) as HTMLSelectElement;
  limit.value = params.get('limit') || '10';
  const btn = el('button', { type: 'button', class: 'primary' }, 'Show');
  const err = el('div', { id: 'card-error', class: 'error', hidden: true });
  const stats = el('div', { id: 'card-stats', class: 'status' });
  const hist = el('div', { class: 'card' }, el('h3', {}, 'Series over time (router samples, last hour)'), el('div', { id: 'card-history', class: 'chart' }));
  const lists = el('div', { class: 'grid2', id: 'card-lists' });
  main.append(el('div', { class: 'row' }, el('h2', { style: 'margin:0' }, 'Cardinality'), match, limit, btn), err, stats, hist, el('div', { style: 'height:12px' }), lists);

  const apply = () => go('#/cardinality?' + new URLSearchParams({ match: match.value.trim(), limit: limit.value }).toString());
  btn.onclick = apply;
  limit.onchange = apply;
  match.onkeydown = (e: KeyboardEvent) => { if (e.key === 'Enter') apply(); };

  (async () => {
    const p: Record<string, string | string[]> = { limit: limit.value };
    if (match.value.trim()) p['match[]'] = [match.value.trim()];
    const [r, s] = await Promise.all([api('/api/v1/status/tsdb', p), api('/api/v1/status/nodes')]);
    if (!main.isConnected) return;
    if (!r.ok) {
      err.hidden = false;
      err.textContent = errorText(r);
    } else {
      const d = r.body.data;
      stats.textContent = `${fmtNum(d.headStats.numSeries)} series · ${fmtNum(d.headStats.numLabelPairs)} label pairs${match.value.trim() ? ' matching ' + match.value.trim() : ''} · ${r.ms.toFixed(0)} ms`;
      const sel = (name: string) => {
        const eq = name.indexOf('=');
        go('#/cardinality?' + new URLSearchParams({ match: `{${name.slice(0, eq)}=${JSON.stringify(name.slice(eq + 1))}}`, limit: limit.value }).toString());
      };
      lists.append(
        table('card-metrics', 'Top metrics (series)', d.seriesCountByMetricName, fmtNum, (n) => go('#/query?' + new URLSearchParams({ q: n }).toString())),
        table('card-labels', 'Label names (distinct values)', d.labelValueCountByLabelName, fmtNum, (n) => go('#/query?' + new URLSearchParams({ q: `count by (${n}) ({${n}!=""})`, tab: 'table' }).toString())),
        table('card-pairs', 'Label-value pairs (series)', d.seriesCountByLabelValuePair, fmtNum, sel),
        table('card-memory', 'Label size (value bytes summed over series)', d.memoryInBytesByLabelName, fmtBytes),
      );
    }
    const h = s.ok ? s.body.data.series_history : [];
    const host = document.getElementById('card-history')!;
    if (h.length < 2) {
      host.append(el('p', { class: 'muted' }, 'The router samples the series count every 10 s; the line appears after two samples.'));
    } else {
      chartObj = drawChart(host, h.map((x: number[]) => x[0]), [{ label: 'series', values: h.map((x: number[]) => x[1]) }], 180);
    }
  })();
}
