// query.ts — the Query page (the landing page): PromQL (or SQL when the
// server has /sql) in a box where Enter runs it; chart (default), table
// and raw JSON views; the range picker, step and auto-refresh; a history
// kept in localStorage; the query, range and step in the address so a
// view can be shared; errors shown under the query at the position the
// API names; the X-Strata-Pushdown plan and the time of each request.
import { api, errorText, ApiResult } from './api';
import { drawChart } from './chart';
import { el, parseDur, seriesName } from './util';

const HIST_KEY = 'strata.history';
const HIST_MAX = 30;
const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '2d', '7d'];
const REFRESH = [['off', 0], ['5s', 5], ['15s', 15], ['30s', 30], ['1m', 60]] as const;
const JSON_MAX = 2 << 20;

let sqlAvailable = false;
let refreshTimer: number | undefined;
let chartObj: any = null;

// Switch the SQL mode on when the server answers /sql (anything but 404).
export async function probeSql(): Promise<void> {
  const r = await api('/sql', { q: 'SELECT 1' });
  sqlAvailable = r.status !== 404 && r.status !== 0;
  const opt = document.querySelector('#lang option[value="sql"]') as HTMLOptionElement | null;
  if (opt && sqlAvailable) { opt.disabled = false; opt.title = ''; }
}

function history(): string[] {
  try { return JSON.parse(localStorage.getItem(HIST_KEY) || '[]'); } catch { return []; }
}
function remember(q: string): void {
  const h = history().filter((x) => x !== q);
  h.unshift(q);
  localStorage.setItem(HIST_KEY, JSON.stringify(h.slice(0, HIST_MAX)));
}

export function stopQuery(): void {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = undefined;
  if (chartObj) { chartObj.destroy(); chartObj = null; }
}

// "invalid parameter \"query\": 1:5: parse error: ..." -> the line and column.
function errorPos(msg: string): [number, number] | null {
  const m = /(?:^|[\s:"])(\d+):(\d+):\s/.exec(msg);
  return m ? [parseInt(m[1], 10), parseInt(m[2], 10)] : null;
}

function showError(box: HTMLElement, query: string, msg: string): void {
  box.textContent = '';
  box.hidden = false;
  box.append(el('div', { text: msg }));
  const pos = errorPos(msg);
  if (pos) {
    const lines = query.split('\n');
    const line = lines[pos[0] - 1];
    if (line !== undefined) {
      const caret = ' '.repeat(Math.max(0, pos[1] - 1)) + '^';
      box.append(el('pre', { class: 'mono' }, line + '\n', el('span', { class: 'caret' }, caret)));
      box.dataset.line = String(pos[0]);
      box.dataset.col = String(pos[1]);
    }
  }
}

export function renderQuery(main: HTMLElement, params: URLSearchParams): void {
  stopQuery();
  const state = {
    q: params.get('q') || '',
    lang: params.get('lang') === 'sql' && sqlAvailable ? 'sql' : 'promql',
    range: params.get('range') || '1h',
    step: params.get('step') || '',
    end: params.get('end') || '',
    tab: params.get('tab') || 'chart',
    refresh: params.get('refresh') || 'off',
  };

  const ta = el('textarea', { id: 'query', rows: 1, 'aria-label': 'Query', spellcheck: 'false', placeholder: 'PromQL, e.g. rate(cpu_usage_user[5m])  (Enter runs, Shift+Enter new line)' }) as HTMLTextAreaElement;
  ta.value = state.q;
  const lang = el('select', { id: 'lang', 'aria-label': 'Query language' },
    el('option', { value: 'promql' }, 'PromQL'),
    el('option', { value: 'sql', disabled: !sqlAvailable, title: sqlAvailable ? '' : 'this server has no /sql endpoint' }, 'SQL')) as HTMLSelectElement;
  lang.value = state.lang;
  const run = el('button', { id: 'run', class: 'primary', type: 'button' }, 'Run');
  const range = el('select', { id: 'range', 'aria-label': 'Time range' }, ...RANGES.map((r) => el('option', { value: r }, 'last ' + r))) as HTMLSelectElement;
  if (!RANGES.includes(state.range)) range.append(el('option', { value: state.range }, 'last ' + state.range));
  range.value = state.range;
  const step = el('input', { id: 'step', size: 6, placeholder: 'auto', 'aria-label': 'Step', value: state.step }) as HTMLInputElement;
  const end = el('input', { id: 'end', type: 'datetime-local', 'aria-label': 'End time (empty: now)', step: 1 }) as HTMLInputElement;
  if (state.end) end.value = new Date(parseFloat(state.end) * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  const refresh = el('select', { id: 'refresh', 'aria-label': 'Auto-refresh' }, ...REFRESH.map(([n]) => el('option', { value: n }, n === 'off' ? 'refresh off' : 'every ' + n))) as HTMLSelectElement;
  refresh.value = state.refresh;
  const hist = el('select', { id: 'history', class: 'history', 'aria-label': 'History' }, el('option', { value: '' }, 'History…'), ...history().map((h) => el('option', { value: h }, h.length > 80 ? h.slice(0, 80) + '…' : h))) as HTMLSelectElement;

  const tabs = el('div', { class: 'tabs', role: 'tablist' });
  const views: Record<string, HTMLElement> = {
    chart: el('div', { id: 'view-chart', role: 'tabpanel', class: 'chart' }),
    table: el('div', { id: 'view-table', role: 'tabpanel' }),
    json: el('div', { id: 'view-json', role: 'tabpanel' }),
  };
  const tabBtns: Record<string, HTMLButtonElement> = {};
  for (const [id, label] of [['chart', 'Chart'], ['table', 'Table'], ['json', 'JSON']]) {
    const b = el('button', { type: 'button', role: 'tab', id: 'tab-' + id, 'aria-controls': 'view-' + id }, label) as HTMLButtonElement;
    b.onclick = () => { state.tab = id; execute(); };
    b.onkeydown = (e: KeyboardEvent) => {
      const ids = ['chart', 'table', 'json'];
      const i = ids.indexOf(id);
      if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
        const n = ids[(i + (e.key === 'ArrowRight' ? 1 : 2)) % 3];
        tabBtns[n].focus();
        tabBtns[n].click();
      }
    };
    tabBtns[id] = b;
    tabs.append(b);
  }
  const status = el('div', { id: 'query-status', class: 'status', 'aria-live': 'polite' });
  const errBox = el('div', { id: 'query-error', class: 'error', role: 'alert', hidden: true });

  main.textContent = '';
  main.append(
    el('div', { class: 'qbox' }, ta, el('div', { class: 'row', style: 'margin:0' }, lang, run)),
    el('div', { class: 'row' }, range, el('label', {}, 'step ', step), el('label', {}, 'end ', end), refresh, hist),
    errBox, tabs, status, views.chart, views.table, views.json,
  );

  function endSec(): number {
    return end.value ? new Date(end.value).getTime() / 1000 : Date.now() / 1000;
  }

  function syncUrl(): void {
    const p = new URLSearchParams();
    if (ta.value) p.set('q', ta.value);
    if (lang.value !== 'promql') p.set('lang', lang.value);
    p.set('range', range.value);
    if (step.value) p.set('step', step.value);
    if (end.value) p.set('end', String(Math.round(endSec())));
    if (state.tab !== 'chart') p.set('tab', state.tab);
    if (refresh.value !== 'off') p.set('refresh', refresh.value);
    const h = '#/query?' + p.toString();
    if (location.hash !== h) history_replace(h);
  }

  function setTimer(): void {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = undefined;
    const sec = (REFRESH.find(([n]) => n === refresh.value) || ['off', 0])[1];
    if (sec) refreshTimer = window.setInterval(() => { if (ta.value.trim()) execute(false); }, sec * 1000);
  }

  function statusLine(r: ApiResult, extra: string): void {
    const pd = r.headers.get('X-Strata-Pushdown');
    status.textContent = '';
    status.append('request ', el('b', { id: 'req-ms' }, r.ms.toFixed(0) + ' ms'), ' · HTTP ' + r.status);
    if (pd !== null) status.append(' · pushdown: ', el('b', { id: 'pushdown' }, pd + (pd === '1' ? ' subtree' : ' subtrees') + ' evaluated on the nodes'));
    if (extra) status.append(' · ' + extra);
  }

  let seq = 0;
  let grid = { start: 0, step: 0, end: 0 };
  async function execute(record = true): Promise<void> {
    const q = ta.value.trim();
    for (const [id, b] of Object.entries(tabBtns)) b.setAttribute('aria-selected', String(id === state.tab));
    for (const [id, v] of Object.entries(views)) v.hidden = id !== state.tab;
    syncUrl();
    setTimer();
    if (!q) return;
    if (record) { remember(q); }
    const my = ++seq;
    errBox.hidden = true;
    const e = endSec();
    const rangeSec = parseDur(range.value) || 3600;
    let r: ApiResult;
    if (lang.value === 'sql') {
      r = await api('/sql', { q }, 'POST');
    } else if (state.tab === 'chart') {
      const st = step.value ? step.value : String(Math.max(1, Math.round(rangeSec / 360)));
      grid = { start: Math.round(e - rangeSec), step: parseDur(st) || parseFloat(st), end: Math.round(e) };
      r = await api('/api/v1/query_range', { query: q, start: String(grid.start), end: String(grid.end), step: st }, 'POST');
    } else {
      r = await api('/api/v1/query', { query: q, time: e.toFixed(3) }, 'POST');
    }
    if (my !== seq) return;
    if (!r.ok) {
      statusLine(r, '');
      showError(errBox, ta.value, errorText(r));
      for (const v of Object.values(views)) v.textContent = '';
      views.json.append(el('pre', { class: 'json mono' }, r.text.slice(0, JSON_MAX)));
      return;
    }
    if (lang.value === 'sql') {
      renderSql(r);
      return;
    }
    const data = r.body && r.body.data ? r.body.data : { resultType: 'none', result: [] };
    if (state.tab === 'json') {
      views.json.textContent = '';
      const txt = JSON.stringify(r.body, null, 2);
      views.json.append(el('pre', { class: 'json mono', id: 'json-out' }, txt.length > JSON_MAX ? txt.slice(0, JSON_MAX) + '\n… (cut at 2 MiB)' : txt));
      statusLine(r, (data.result || []).length + ' series');
    } else if (state.tab === 'table') {
      renderTable(views.table, data, e);
      statusLine(r, (Array.isArray(data.result) ? data.result.length : 0) + ' rows at ' + new Date(e * 1000).toISOString());
    } else {
      const t0 = performance.now();
      const n = renderChart(views.chart, data);
      const drawMs = performance.now() - t0;
      statusLine(r, n + ' series · chart drawn in ' + drawMs.toFixed(0) + ' ms');
      (window as any).__strataChart = { series: n, requestMs: r.ms, ttfbMs: r.ttfbMs, parseMs: r.parseMs, sentAt: r.startedAt, bytes: r.text.length, drawMs, at: performance.now() };
    }
  }

  // An SQL answer: a table of its columns and rows when it has them
  // ({"columns": [...], "rows": [[...], ...]}, also under "data"), the
  // JSON otherwise; the chart view does not apply.
  function renderSql(r: ApiResult): void {
    const d = r.body && r.body.columns ? r.body : r.body && r.body.data && r.body.data.columns ? r.body.data : null;
    for (const v of Object.values(views)) v.textContent = '';
    const txt = JSON.stringify(r.body, null, 2);
    views.json.append(el('pre', { class: 'json mono', id: 'json-out' }, txt.slice(0, JSON_MAX)));
    if (d && Array.isArray(d.columns) && Array.isArray(d.rows)) {
      const tb = el('tbody');
      for (const row of d.rows) tb.append(el('tr', {}, ...row.map((c: any) => el('td', { class: 'mono' }, String(c)))));
      views.table.append(el('table', { id: 'result-table' }, el('thead', {}, el('tr', {}, ...d.columns.map((c: any) => el('th', {}, String(typeof c === 'object' && c ? c.name : c))))), tb));
      if (state.tab === 'chart') { state.tab = 'table'; }
    } else if (state.tab !== 'json') {
      state.tab = 'json';
    }
    for (const [id, b] of Object.entries(tabBtns)) b.setAttribute('aria-selected', String(id === state.tab));
    for (const [id, v] of Object.entries(views)) v.hidden = id !== state.tab;
    statusLine(r, 'SQL');
  }

  function renderChart(host: HTMLElement, data: any): number {
    if (chartObj) { chartObj.destroy(); chartObj = null; }
    host.textContent = '';
    const res: any[] = data.resultType === 'matrix' ? data.result : [];
    if (!res.length) {
      host.append(el('p', { class: 'muted', id: 'chart-empty' }, 'No data in this range.'));
      host.dataset.series = '0';
      return 0;
    }
    // one x axis: the range query's grid start + i * step (every point of
    // every series sits on it); a gap is null
    const { start, step: st } = grid;
    const n = st > 0 ? Math.floor((grid.end - start) / st) + 1 : 0;
    const xs = new Array(n);
    for (let i = 0; i < n; i++) xs[i] = start + i * st;
    const series = res.map((s) => {
      const vals: (number | null)[] = new Array(n).fill(null);
      for (const v of s.values) {
        const i = Math.round((v[0] - start) / st);
        if (i >= 0 && i < n) vals[i] = parseFloat(v[1]);
      }
      return { label: seriesName(s.metric), values: vals };
    });
    chartObj = drawChart(host, xs, series);
    return series.length;
  }

  function renderTable(host: HTMLElement, data: any, t: number): void {
    host.textContent = '';
    const tb = el('tbody');
    const tbl = el('table', { id: 'result-table', 'data-time': t.toFixed(3) }, el('thead', {}, el('tr', {}, el('th', {}, 'series'), el('th', { class: 'num' }, 'value'))), tb);
    const rows: any[] = data.resultType === 'vector' ? data.result : data.resultType === 'scalar' || data.resultType === 'string' ? [{ metric: {}, value: data.result }] : [];
    if (data.resultType === 'matrix') for (const s of data.result) rows.push({ metric: s.metric, value: s.values[s.values.length - 1] });
    for (const s of rows) {
      const name = seriesName(s.metric || {});
      tb.append(el('tr', { 'data-labels': JSON.stringify(s.metric || {}), 'data-value': s.value[1] }, el('td', { class: 'mono' }, name), el('td', { class: 'num mono' }, String(s.value[1]))));
    }
    host.append(rows.length ? tbl : el('p', { class: 'muted' }, 'Empty result.'));
  }

  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); execute(); }
  });
  ta.addEventListener('input', () => { ta.rows = Math.min(8, ta.value.split('\n').length); });
  run.onclick = () => execute();
  range.onchange = () => execute();
  step.onchange = () => execute();
  end.onchange = () => execute();
  lang.onchange = () => execute(false);
  refresh.onchange = () => { syncUrl(); setTimer(); };
  hist.onchange = () => { if (hist.value) { ta.value = hist.value; hist.value = ''; execute(); } };

  for (const [id, v] of Object.entries(views)) v.hidden = id !== state.tab;
  for (const [id, b] of Object.entries(tabBtns)) b.setAttribute('aria-selected', String(id === state.tab));
  ta.focus();
  if (state.q) execute(false);
}

// Change the address without adding a history entry (replaceState fires
// no hashchange, so the page is not rendered again).
function history_replace(h: string): void {
  window.history.replaceState(null, '', h);
}
