// cluster.ts — the Cluster page: every node's state (up, down,
// connecting, catching up, degraded and why), hint backlogs, key figures
// (ingest rate, head samples, series, disk) from /api/v1/status/nodes; the
// shard x replica grid coloured by the state of the node holding each
// replica, from /cluster; the topology fingerprint. Refreshed every 2 s.
import { api, errorText } from './api';
import { el, fmtBytes, fmtNum } from './util';

const REFRESH_MS = 2000;
let timer: number | undefined;

export function stopCluster(): void {
  if (timer) clearInterval(timer);
  timer = undefined;
}

// "degraded: wal fsync failed" -> class s-degraded; "catching_up" -> s-catching_up
function stateClass(state: string): string {
  return 's-' + state.split(':')[0].trim();
}

function stateLabel(state: string): string {
  return state.replace('catching_up', 'catching up');
}

export function renderCluster(main: HTMLElement): void {
  stopCluster();
  main.textContent = '';
  const head = el('div', { class: 'row' }, el('h2', { style: 'margin:0' }, 'Cluster'), el('span', { id: 'cl-meta', class: 'muted' }));
  const err = el('div', { id: 'cluster-error', class: 'error', hidden: true });
  const nodes = el('div', { class: 'card' }, el('h3', {}, 'Nodes'), el('div', { id: 'cl-nodes' }));
  const grid = el('div', { class: 'card' }, el('h3', {}, 'Shard placement (shard × replica)'), el('div', { id: 'cl-grid' }));
  const upd = el('div', { id: 'cl-updated', class: 'status' });
  main.append(head, err, nodes, el('div', { style: 'height:12px' }), grid, upd);

  async function tick(): Promise<void> {
    const [c, s] = await Promise.all([api('/cluster'), api('/api/v1/status/nodes')]);
    if (!main.isConnected) return;
    if (!c.ok || !s.ok) {
      err.hidden = false;
      err.textContent = 'cannot read the cluster: ' + errorText(!c.ok ? c : s);
      return;
    }
    err.hidden = true;
    const cl = c.body;
    const st = s.body.data;
    const byId = new Map<string, any>();
    for (const n of st.nodes) byId.set(n.id, n);
    document.getElementById('cl-meta')!.textContent =
      `${cl.cluster} · fingerprint ${cl.fingerprint} · ${cl.shards} shards · replication ${cl.replication_factor} · write ${cl.write_consistency} · read ${cl.read_consistency}`;

    const tb = el('tbody');
    for (const n of st.nodes) {
      const state: string = n.state;
      const reason = state.startsWith('degraded') ? state.slice(state.indexOf(':') + 1).trim() : '';
      // a node that is not up keeps its last figures, shown faded; its
      // ingest rate is unknown
      tb.append(el('tr', { 'data-node': n.id, 'data-state': state.split(':')[0], class: n.up ? '' : 'stale', title: n.up ? '' : 'last figures before it went ' + state },
        el('td', { class: 'mono' }, n.id),
        el('td', {}, el('span', { class: 'badge ' + stateClass(state), title: state }, stateLabel(state.split(':')[0])), reason ? el('div', { class: 'muted' }, reason) : null),
        el('td', { class: 'mono muted' }, n.http),
        el('td', { class: 'num' }, n.up ? fmtNum(n.ingest_rate) + '/s' : '—'),
        el('td', { class: 'num' }, fmtNum(n.series)),
        el('td', { class: 'num' }, fmtNum(n.head_samples)),
        el('td', { class: 'num' }, fmtBytes(n.disk_bytes)),
        el('td', { class: 'num', title: 'hint records other nodes hold for this node' }, fmtNum(n.hints_pending)),
        el('td', { class: 'num', title: 'hint records this node holds for others' }, fmtNum(n.hints_held)),
        el('td', { class: 'num' }, String(n.pending_rpcs)),
        el('td', { class: 'num muted' }, n.stats_age_ms < 0 ? 'never' : (n.stats_age_ms / 1000).toFixed(1) + ' s ago')));
    }
    const t = el('table', { id: 'cl-node-table' }, el('thead', {}, el('tr', {},
      ...['node', 'state', 'http', 'ingest', 'series', 'head samples', 'disk', 'hints for it', 'hints it holds', 'RPCs in flight', 'stats'].map((h, i) => el('th', { class: i >= 3 ? 'num' : '' }, h)))), tb);
    const nh = document.getElementById('cl-nodes')!;
    nh.textContent = '';
    nh.append(t);

    const rf = cl.replication_factor;
    const gb = el('tbody');
    for (const p of cl.placement) {
      const tr = el('tr', {}, el('th', { class: 'num' }, String(p.shard)));
      p.replicas.forEach((id: string) => {
        const n = byId.get(id);
        const state = n ? n.state : 'down';
        tr.append(el('td', { class: stateClass(state), title: `shard ${p.shard}: ${id} ${state}`, 'data-state': state.split(':')[0] }, id));
      });
      gb.append(tr);
    }
    const gt = el('table', { class: 'shardgrid', id: 'cl-shard-grid' }, el('thead', {}, el('tr', {}, el('th', { class: 'num' }, 'shard'),
      ...Array.from({ length: rf }, (_, i) => el('th', {}, 'replica ' + (i + 1))))), gb);
    const gh = document.getElementById('cl-grid')!;
    gh.textContent = '';
    gh.append(gt);
    upd.textContent = 'updated ' + new Date().toLocaleTimeString() + ` (every ${REFRESH_MS / 1000} s) · requests ${c.ms.toFixed(0)} + ${s.ms.toFixed(0)} ms`;
  }
  tick();
  timer = window.setInterval(tick, REFRESH_MS);
}
