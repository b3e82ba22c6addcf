// util.ts — small DOM and formatting helpers shared by the pages.

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, any>, ...kids: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) (e as any)[k] = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

export function fmtNum(v: number): string {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e12) return (v / 1e12).toFixed(2) + 'T';
  if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  return String(Math.round(v * 1000) / 1000);
}

export function fmtBytes(v: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : String(v)) + ' ' + u[i];
}

// {__name__="x", a="b"} -> x{a="b"}
export function seriesName(m: Record<string, string>): string {
  const name = m.__name__ || '';
  const rest = Object.keys(m).filter((k) => k !== '__name__').sort().map((k) => k + '=' + JSON.stringify(m[k]));
  return name + (rest.length || !name ? '{' + rest.join(', ') + '}' : '');
}

// Duration like 5m, 1h, 1d, 30s -> seconds (NaN if not one).
export function parseDur(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(s.trim());
  if (!m) return NaN;
  const mult: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  return parseFloat(m[1]) * mult[m[2]];
}
