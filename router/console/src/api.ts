// api.ts — every request the console makes goes through here: to the
// router that served the page (same origin, never anywhere else), with
// the sign-in credentials when the server asked for them (a 401 opens the
// sign-in dialog), and the time each request took.

export interface ApiResult {
  status: number;
  ok: boolean;
  body: any;
  text: string;
  ms: number;       // the whole request, body read and parsed
  ttfbMs: number;   // until the response's head arrived
  parseMs: number;  // JSON.parse of the body
  startedAt: number; // performance.now() when it was sent
  headers: Headers;
}

const AUTH_KEY = 'strata.auth';
let onUnauthorized: (() => void) | null = null;

export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export function authHeader(): string | null {
  return sessionStorage.getItem(AUTH_KEY);
}

// A bearer token, or user and password (HTTP Basic).
export function signIn(token: string, user: string, pass: string): void {
  if (token) sessionStorage.setItem(AUTH_KEY, 'Bearer ' + token);
  else if (user) sessionStorage.setItem(AUTH_KEY, 'Basic ' + btoa(unescape(encodeURIComponent(user + ':' + pass))));
}

export function signOut(): void {
  sessionStorage.removeItem(AUTH_KEY);
}

export async function api(path: string, params?: Record<string, string | string[]>, method = 'GET'): Promise<ApiResult> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== '') q.append(k, v);
  }
  const headers: Record<string, string> = {};
  const a = authHeader();
  if (a) headers['Authorization'] = a;
  const t0 = performance.now();
  let url = path;
  let body: string | undefined;
  if (method === 'POST') {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = q.toString();
  } else if ([...q].length) {
    url += '?' + q.toString();
  }
  let res: Response;
  try {
    res = await fetch(url, { method, headers, body, cache: 'no-store' });
  } catch (e) {
    const ms = performance.now() - t0;
    return { status: 0, ok: false, body: { error: 'network error: ' + e }, text: '', ms, ttfbMs: ms, parseMs: 0, startedAt: t0, headers: new Headers() };
  }
  const ttfbMs = performance.now() - t0;
  const text = await res.text();
  const t1 = performance.now();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: text.trim() };
  }
  const ms = performance.now() - t0;
  if (res.status === 401 && onUnauthorized) onUnauthorized();
  return { status: res.status, ok: res.ok, body: parsed, text, ms, ttfbMs, parseMs: performance.now() - t1, startedAt: t0, headers: res.headers };
}

// The message of an error answer (Prometheus format or plain text).
export function errorText(r: ApiResult): string {
  if (r.body && typeof r.body === 'object' && r.body.error) return String(r.body.error);
  return 'HTTP ' + r.status + (r.text ? ': ' + r.text.slice(0, 500) : '');
}
