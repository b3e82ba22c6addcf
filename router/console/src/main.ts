// main.ts — the console's entry: hash routing between the three pages
// (#/query, #/cluster, #/cardinality, each keeping its state in the
// address), the dark/light theme (the system's by default, a choice kept
// in localStorage), keyboard shortcuts, and the sign-in dialog that opens
// when the server answers 401 (token or user/password, then every request
// carries an Authorization header).
import './style.css';
import { api, setUnauthorizedHandler, signIn, signOut, authHeader } from './api';
import { renderQuery, stopQuery, probeSql } from './query';
import { renderCluster, stopCluster } from './cluster';
import { renderCardinality, stopCardinality } from './cardinality';

const THEME_KEY = 'strata.theme';

function applyTheme(t: string): void {
  document.documentElement.dataset.theme = t;
}
function initTheme(): void {
  const saved = localStorage.getItem(THEME_KEY);
  applyTheme(saved || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
  document.getElementById('theme-btn')!.onclick = toggleTheme;
}
function toggleTheme(): void {
  const t = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  localStorage.setItem(THEME_KEY, t);
  applyTheme(t);
  route();
}

function go(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route(): void {
  const main = document.getElementById('main')!;
  const h = location.hash.replace(/^#\/?/, '');
  const qi = h.indexOf('?');
  const page = (qi < 0 ? h : h.slice(0, qi)) || 'query';
  const params = new URLSearchParams(qi < 0 ? '' : h.slice(qi + 1));
  stopQuery();
  stopCluster();
  stopCardinality();
  for (const p of ['query', 'cluster', 'cardinality']) {
    const a = document.getElementById('nav-' + p)!;
    if (p === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = 'Strata · ' + page;
  if (page === 'cluster') renderCluster(main);
  else if (page === 'cardinality') renderCardinality(main, params, go);
  else renderQuery(main, params);
}

function initSignIn(): void {
  const dlg = document.getElementById('signin') as HTMLDialogElement;
  const btn = document.getElementById('signin-btn')!;
  const who = document.getElementById('who')!;
  const show = () => { if (!dlg.open) dlg.showModal(); };
  setUnauthorizedHandler(() => { btn.hidden = false; show(); });
  btn.onclick = () => {
    if (authHeader()) { signOut(); btn.textContent = 'Sign in'; who.textContent = ''; route(); }
    else show();
  };
  document.getElementById('si-cancel')!.onclick = () => dlg.close();
  document.getElementById('signin-form')!.addEventListener('submit', () => {
    const token = (document.getElementById('si-token') as HTMLInputElement).value.trim();
    const user = (document.getElementById('si-user') as HTMLInputElement).value.trim();
    const pass = (document.getElementById('si-pass') as HTMLInputElement).value;
    signIn(token, user, pass);
    (document.getElementById('si-pass') as HTMLInputElement).value = '';
    (document.getElementById('si-token') as HTMLInputElement).value = '';
    btn.hidden = false;
    btn.textContent = 'Sign out';
    who.textContent = user || (token ? 'token' : '');
    route();
  });
  if (authHeader()) { btn.hidden = false; btn.textContent = 'Sign out'; }
}

function initKeys(): void {
  document.addEventListener('keydown', (e) => {
    const t = e.target as HTMLElement;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT');
    if (e.altKey && ['1', '2', '3'].includes(e.key)) {
      e.preventDefault();
      go(['#/query', '#/cluster', '#/cardinality'][parseInt(e.key, 10) - 1]);
    } else if (!typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      if (e.key === '/') { e.preventDefault(); const q = document.getElementById('query') || document.getElementById('card-match'); if (q) (q as HTMLElement).focus(); }
      else if (e.key === 't') toggleTheme();
      else if (e.key === 'g') go('#/query');
      else if (e.key === 'c') go('#/cluster');
      else if (e.key === 'k') go('#/cardinality');
    }
  });
}

function start(): void {
  initTheme();
  initSignIn();
  initKeys();
  window.addEventListener('hashchange', route);
  route();
  // in the background, not delaying the first query: a cheap authenticated
  // probe (a 401 opens the sign-in dialog) and whether /sql exists (the
  // SQL choice is enabled when it answers)
  api('/api/v1/status/buildinfo');
  probeSql().catch(() => undefined);
}

start();
