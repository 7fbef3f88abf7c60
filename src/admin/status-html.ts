import { createHash } from 'node:crypto';
import type { BackendStatus, FrontendStatus, ServerStatus, StatusSnapshot } from './status-json.js';

/** Seconds between refreshes of an open /status page (`/status?refresh=N` changes it). */
export const REFRESH_SECONDS = 5;

/** `?refresh=N` from the query: whole seconds, 1 to 3600; anything else is the default. */
export function refreshSeconds(query: URLSearchParams): number {
  const n = Number(query.get('refresh'));
  return Number.isInteger(n) && n >= 1 && n <= 3600 ? n : REFRESH_SECONDS;
}

/**
 * Refreshes the page in place: fetches /status again and swaps the parts that
 * change, so scrolling and selection survive (a meta refresh would reset
 * them). If sniffmux stops answering, the page says so instead of freezing on
 * numbers that look current.
 */
const SCRIPT = `(() => {
  // Read from the page, not built into the script: the CSP allows this exact script by its hash.
  const every = Number(document.body.dataset.refresh) * 1000;
  const tick = async () => {
    try {
      const res = await fetch(location.href, { cache: 'no-store', headers: { accept: 'text/html' } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const next = new DOMParser().parseFromString(await res.text(), 'text/html');
      for (const id of ['top', 'status']) {
        const fresh = next.getElementById(id);
        const old = document.getElementById(id);
        if (fresh && old) old.replaceWith(fresh);
      }
      document.title = next.title;
      const icon = next.querySelector('link[rel=icon]');
      if (icon) document.querySelector('link[rel=icon]').href = icon.href;
      document.body.classList.remove('stale');
    } catch {
      document.body.classList.add('stale');
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
})();`;

/** The Content-Security-Policy of /status: nothing external, only this page's own inline script. */
export const STATUS_CSP = [
  "default-src 'none'",
  "style-src 'unsafe-inline'",
  `script-src 'sha256-${createHash('sha256').update(SCRIPT).digest('base64')}'`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const STYLE = `
:root {
  --bg: #f4f6f8; --card: #fff; --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --head: #0d1117;
  --up: #1a7f37; --up-bg: #dafbe1; --down: #cf222e; --down-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5;
  --accent: #0969da;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.num, td.n, th.n { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.top { background: var(--head); color: #e6edf3; padding: 12px 28px; display: flex; align-items: center; gap: 24px; flex-wrap: wrap; }
.brand { font-size: 18px; font-weight: 650; letter-spacing: .2px; display: flex; align-items: center; gap: 10px; }
.brand .dot { width: 12px; height: 12px; border-radius: 50%; display: inline-block; box-shadow: 0 0 0 3px rgba(255,255,255,.12); }
.brand .ver { font-size: 12px; font-weight: 400; color: #8b949e; }
#meta { margin-left: auto; color: #8b949e; font-size: 13px; display: flex; gap: 18px; flex-wrap: wrap; }
#meta b { color: #e6edf3; font-weight: 600; }
#lost { display: none; background: var(--down); color: #fff; padding: 8px 28px; font-weight: 600; }
body.stale #lost { display: block; }
body.stale main { opacity: .55; }
main { padding: 20px 28px 8px; max-width: 1500px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin-bottom: 22px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
.tile .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; margin-top: 2px; }
.tile .sub { color: var(--muted); font-size: 12px; }
.tile.bad .value { color: var(--down); } .tile.good .value { color: var(--up); } .tile.warn .value { color: var(--warn); }
h2 { font-size: 15px; text-transform: uppercase; letter-spacing: .8px; color: var(--muted); margin: 22px 0 10px; font-weight: 600; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin-bottom: 14px; overflow: hidden; }
.card.down { border-color: #ff818266; box-shadow: inset 4px 0 0 var(--down); }
.card.degraded { box-shadow: inset 4px 0 0 #d4a72c; }
.card.up { box-shadow: inset 4px 0 0 #4ac26b; }
.card-head { display: flex; align-items: baseline; gap: 12px; padding: 12px 16px 10px 20px; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.card-head h3 { margin: 0; font-size: 16px; }
.card-head .info { color: var(--muted); font-size: 13px; }
.card-head .totals { margin-left: auto; color: var(--muted); font-size: 13px; display: flex; gap: 14px; }
.card-head .totals b { color: var(--ink); font-weight: 600; font-variant-numeric: tabular-nums; }
.card-head .totals b.warn { color: var(--warn); } .card-head .totals b.err { color: var(--down); }
table { width: 100%; border-collapse: collapse; }
.scroll { overflow-x: auto; }
/* Fixed columns line the server tables of all backends up with each other. */
table.servers { table-layout: fixed; min-width: 1100px; }
table.servers td { overflow: hidden; text-overflow: ellipsis; }
table.servers td.check { white-space: normal; }
th { text-align: left; font-size: 12px; color: var(--muted); font-weight: 600; padding: 8px 12px; border-bottom: 1px solid var(--line); background: #f6f8fa; white-space: nowrap; }
td { padding: 8px 12px; border-bottom: 1px solid #eaeef2; vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
td:first-child, th:first-child { padding-left: 20px; }
tr.down td { background: #fff5f5; }
.pill { display: inline-block; min-width: 48px; text-align: center; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 700; letter-spacing: .4px; }
.pill.up { color: var(--up); background: var(--up-bg); } .pill.down { color: var(--down); background: var(--down-bg); }
.pill.degraded { color: var(--warn); background: var(--warn-bg); }
.tag { display: inline-block; border: 1px solid var(--line); color: var(--muted); border-radius: 4px; padding: 0 6px; font-size: 11px; margin-left: 6px; vertical-align: 1px; }
.chips span { display: inline-block; background: #eef2f6; border-radius: 4px; padding: 0 6px; margin: 1px 4px 1px 0; font-size: 12px; white-space: nowrap; }
.chips span b { font-weight: 600; font-variant-numeric: tabular-nums; }
.check { white-space: nowrap; }
.check .ok { color: var(--up); font-weight: 700; } .check .fail { color: var(--down); font-weight: 700; }
.check .age, .muted { color: var(--muted); }
.check .age { white-space: nowrap; }
.err { color: var(--down); font-weight: 600; }
.zero { color: #8c959f; }
.empty { padding: 14px 20px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; padding: 8px 28px 24px; }
footer a { color: var(--accent); text-decoration: none; margin-right: 14px; }
`;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Every value that reaches the page goes through this: error details can hold anything. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** A duration for people: 450 ms, 3.2 s, 4 min 10 s, 2 h 5 min, 3 d 4 h. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 10) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function num(n: number, cls = ''): string {
  return `<td class="n${n === 0 ? ' zero' : ''}${cls ? ` ${cls}` : ''}">${formatCount(n)}</td>`;
}

function bytes(n: number): string {
  return `<td class="n${n === 0 ? ' zero' : ''}">${formatBytes(n)}</td>`;
}

function errors(n: number, title: string): string {
  return `<td class="n${n === 0 ? ' zero' : ' err'}" title="${escapeHtml(title)}">${formatCount(n)}</td>`;
}

function limit(active: number, max: number): string {
  return max > 0 ? `${formatCount(active)} <span class="muted">/ ${formatCount(max)}</span>` : formatCount(active);
}

function terminationsTitle(terminations: Record<string, number>): string {
  const parts = Object.entries(terminations).map(([k, v]) => `${k}: ${v}`);
  return parts.length > 0 ? parts.join(', ') : 'no finished connections';
}

function chips(counts: Record<string, number>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return '<span class="muted">—</span>';
  return entries.map(([k, v]) => `<span>${escapeHtml(k)} <b>${formatCount(v)}</b></span>`).join('');
}

function tile(label: string, value: string, sub: string, cls = ''): string {
  return `<div class="tile ${cls}"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
}

function tiles(s: StatusSnapshot): string {
  const servers = s.backends.flatMap((b) => b.servers);
  const up = servers.filter((x) => x.state === 'up').length;
  const fe = s.frontends;
  const total = fe.reduce((n, f) => n + f.total, 0);
  const errorCount = fe.reduce((n, f) => n + f.errors, 0);
  const serversClass = servers.length === 0 ? '' : up === servers.length ? 'good' : up === 0 ? 'bad' : 'warn';
  return `<section class="tiles">
${tile('Active connections', formatCount(s.connections.active), s.connections.maxconn > 0 ? `of ${formatCount(s.connections.maxconn)} allowed` : 'no global limit')}
${tile('Connections', formatCount(total), 'accepted since start')}
${tile('Bytes in', formatBytes(fe.reduce((n, f) => n + f.bytesIn, 0)), 'from clients')}
${tile('Bytes out', formatBytes(fe.reduce((n, f) => n + f.bytesOut, 0)), 'to clients')}
${tile('Errors', formatCount(errorCount), 'timeouts, refused, no server…', errorCount > 0 ? 'bad' : '')}
${tile('Servers up', `${up} / ${servers.length}`, servers.length - up > 0 ? `${servers.length - up} down` : 'all healthy', serversClass)}
</section>`;
}

function frontendRow(f: FrontendStatus): string {
  const listen = f.listen
    .map((l) => `<code>${escapeHtml(l.address)}</code>${l.bound && l.bound !== l.address ? ` <span class="muted mono">→ ${escapeHtml(l.bound)}</span>` : ''}`)
    .join('<br>');
  return `<tr>
<td><b>${escapeHtml(f.name)}</b></td>
<td>${listen}</td>
<td class="n">${limit(f.active, f.maxconn)}</td>
${num(f.total)}
<td class="chips">${chips(f.protocols)}</td>
${bytes(f.bytesIn)}${bytes(f.bytesOut)}
${errors(f.errors, terminationsTitle(f.terminations))}
</tr>`;
}

function frontends(list: readonly FrontendStatus[]): string {
  return `<div class="card"><table>
<thead><tr><th>Frontend</th><th>Listening on</th><th class="n">Active</th><th class="n">Total</th><th>Protocols</th><th class="n">In</th><th class="n">Out</th><th class="n">Errors</th></tr></thead>
<tbody>${list.map(frontendRow).join('')}</tbody>
</table></div>`;
}

function checkCell(s: ServerStatus, b: BackendStatus): string {
  if (s.check === null) return '<td class="check muted">no check</td>';
  const last = s.check.last;
  if (last === null) return '<td class="check muted">waiting for the first check</td>';
  const mark = last.ok ? '<span class="ok">✓</span>' : '<span class="fail">✗</span>';
  // A run against the current state shows how close the server is to flipping.
  const need = s.state === 'up' ? b.healthCheck?.fall : b.healthCheck?.rise;
  const pending = s.check.pending > 0 && need ? ` <span class="tag">${s.check.pending}/${need} ${s.state === 'up' ? 'failed' : 'passed'}</span>` : '';
  return `<td class="check" title="${formatCount(s.check.passes)} passed, ${formatCount(s.check.fails)} failed">${mark} ${escapeHtml(last.detail)} <span class="age">in ${formatDuration(last.duration)} · ${formatDuration(last.age)} ago</span>${pending}</td>`;
}

function serverRow(s: ServerStatus, b: BackendStatus): string {
  return `<tr class="${s.state}">
<td><span class="pill ${s.state}">${s.state.toUpperCase()}</span></td>
<td><b>${escapeHtml(s.name)}</b>${s.backup ? '<span class="tag">backup</span>' : ''}</td>
<td><code>${escapeHtml(s.address)}</code></td>
${num(s.weight)}
<td class="n">${limit(s.active, s.maxconn)}</td>
${num(s.total)}
${bytes(s.bytesIn)}${bytes(s.bytesOut)}
${errors(s.errors + s.failures, `${s.failures} failed connects; ${terminationsTitle(s.terminations)}`)}
${checkCell(s, b)}
</tr>`;
}

function checkSummary(b: BackendStatus): string {
  const c = b.healthCheck;
  if (c === null) return 'no health check';
  const what = c.type === 'http' ? `http GET ${escapeHtml(c.path)} → ${escapeHtml(c.expect)}` : 'tcp connect';
  return `check ${what} every ${formatDuration(c.interval)}, rise ${c.rise} / fall ${c.fall}, timeout ${formatDuration(c.timeout)}`;
}

function backendCard(b: BackendStatus): string {
  const label = b.state === 'degraded' ? 'PARTLY UP' : b.state.toUpperCase();
  return `<section class="card ${b.state}">
<div class="card-head">
<span class="pill ${b.state}">${label}</span>
<h3>${escapeHtml(b.name)}</h3>
<span class="info">${escapeHtml(b.mode)} · ${escapeHtml(b.balance)} · ${b.serversUp}/${b.servers.length} up · ${checkSummary(b)}</span>
<span class="totals"><span>active <b>${formatCount(b.active)}</b></span><span>total <b>${formatCount(b.total)}</b></span><span>queue <b${b.queue > 0 ? ' class="warn"' : ''}>${formatCount(b.queue)}</b></span><span>errors <b${b.errors > 0 ? ' class="err"' : ''}>${formatCount(b.errors)}</b></span></span>
</div>
<div class="scroll"><table class="servers">
<colgroup><col style="width:108px"><col style="width:136px"><col style="width:176px"><col style="width:66px"><col style="width:100px"><col style="width:72px"><col style="width:84px"><col style="width:84px"><col style="width:66px"><col></colgroup>
<thead><tr><th>State</th><th>Server</th><th>Address</th><th class="n">Weight</th><th class="n">Active</th><th class="n">Total</th><th class="n">In</th><th class="n">Out</th><th class="n">Errors</th><th>Last health check</th></tr></thead>
<tbody>${b.servers.map((s) => serverRow(s, b)).join('')}</tbody>
</table></div>
</section>`;
}

function overall(s: StatusSnapshot): 'up' | 'degraded' | 'down' {
  if (s.backends.some((b) => b.state === 'down')) return 'down';
  if (s.backends.some((b) => b.state === 'degraded')) return 'degraded';
  return 'up';
}

const DOT_COLOUR = { up: '#3fb950', degraded: '#d29922', down: '#f85149' } as const;

/** With cluster workers: how many, their pids on hover (the numbers on the page are their sums). */
function workersMeta(s: StatusSnapshot): string {
  if (s.workers === undefined) return '';
  const pids = s.workers.map((w) => `worker ${w.id}: pid ${w.pid}, ${formatCount(w.active)} active, ${formatCount(w.total)} total`).join('\n');
  return `<span title="${escapeHtml(pids)}">workers <b>${s.workers.length}</b></span>`;
}

/** The /status page: everything on one screen, no external assets, refreshing itself. */
export function renderStatusHtml(s: StatusSnapshot, refresh = REFRESH_SECONDS): string {
  const state = overall(s);
  const down = s.backends.flatMap((b) => b.servers).filter((x) => x.state === 'down').length;
  const title = `sniffmux · ${down > 0 ? `${down} server${down === 1 ? '' : 's'} down` : 'all up'}`;
  const colour = DOT_COLOUR[state];
  const icon = `data:image/svg+xml,${encodeURIComponent(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="${colour}"/></svg>`)}`;
  const updated = s.sniffmux.now.slice(11, 19);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="${icon}">
<noscript><meta http-equiv="refresh" content="${refresh}"></noscript>
<style>${STYLE}</style>
</head>
<body data-refresh="${refresh}">
<header class="top" id="top">
<div class="brand"><span class="dot" style="background:${colour}"></span>sniffmux <span class="ver">v${escapeHtml(s.sniffmux.version)}</span></div>
<div id="meta"><span>pid <b>${s.sniffmux.pid}</b></span>${workersMeta(s)}<span>up <b>${formatDuration(s.sniffmux.uptime * 1000)}</b></span><span>updated <b>${updated}</b> UTC</span></div>
</header>
<div id="lost">Lost contact with sniffmux — the numbers below are the last ones it sent.</div>
<main id="status">
${tiles(s)}
<h2>Frontends</h2>
${s.frontends.length > 0 ? frontends(s.frontends) : '<div class="card empty">No frontends.</div>'}
<h2>Backends</h2>
${s.backends.length > 0 ? s.backends.map(backendCard).join('\n') : '<div class="card empty">No backends: every frontend only answers policy requests.</div>'}
</main>
<footer><a href="status.json">status.json</a><a href="metrics">metrics</a>refreshes every ${refresh} s</footer>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
