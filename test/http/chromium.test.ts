import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { startMux } from '../helpers/mux.js';
import { haveTool } from '../helpers/tools.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../helpers/browser.js';

/**
 * A real browser through http mode: headless Chromium (Debian's, driven by
 * playwright-core) loads a page from an HTTP backend through sniffmux, and
 * the page opens a WebSocket back to the same host and port, which sniffmux
 * routes to a WebSocket backend. The echoed text is asserted and a
 * screenshot saved under the test's folder.
 */
const ARGS = CHROMIUM_ARGS;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sniffmux http mode</title></head>
<body style="font: 20px sans-serif">
<h1>sniffmux: one port, HTTP and WebSocket</h1>
<p>page served by: <b id="server">%SERVER%</b></p>
<p>WebSocket says: <b id="echo">(waiting)</b></p>
<script>
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => ws.send('hello from ' + navigator.userAgent.split(' ').find((p) => p.startsWith('HeadlessChrome') || p.startsWith('Chrome')));
  ws.onmessage = (e) => { document.getElementById('echo').textContent = e.data; };
  ws.onerror = () => { document.getElementById('echo').textContent = 'websocket error'; };
</script>
</body></html>`;

t.test('headless Chromium: a page through sniffmux, and a WebSocket back over the same port', async (t) => {
  if (!haveTool(t, 'chromium')) return;
  const web = http.createServer((req, res) => {
    if (req.url === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE.replace('%SERVER%', `web (X-Forwarded-For: ${req.headers['x-forwarded-for']})`));
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const wsHttp = http.createServer();
  const wss = new WebSocketServer({ server: wsHttp });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo: ${m.toString()}`)));
  await new Promise<void>((r) => wsHttp.listen(0, '127.0.0.1', r));
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], rules: [{ if: { websocket: true }, use: 'ws' }], default: 'web' }],
    backends: [
      { name: 'web', mode: 'http', http: { forwardedFor: true }, servers: [{ name: 'web1', address: `127.0.0.1:${(web.address() as net.AddressInfo).port}` }] },
      { name: 'ws', mode: 'http', servers: [{ name: 'ws1', address: `127.0.0.1:${(wsHttp.address() as net.AddressInfo).port}` }] },
    ],
  });
  const profile = mkdtempSync(path.join(tmpdir(), 'smx-chromium-'));
  t.teardown(async () => {
    await mux.stop();
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => web.close(r));
    web.closeAllConnections();
    await new Promise((r) => wsHttp.close(r));
    rmSync(profile, { recursive: true, force: true });
  });

  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  t.teardown(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const response = await page.goto(`http://127.0.0.1:${mux.port('fe')}/`);
  t.equal(response?.status(), 200, 'the page loads through sniffmux');
  t.match(await page.textContent('#server'), /^web \(X-Forwarded-For: 127\.0\.0\.1\)$/);
  await page.waitForFunction(() => document.getElementById('echo')?.textContent !== '(waiting)');
  t.match(await page.textContent('#echo'), /^echo: hello from (Headless)?Chrome\/\d+/, 'the WebSocket echo came back over the same port');

  t.saveFixture = true;
  const dir = t.testdir();
  const screenshot = path.join(dir, 'chromium-http-mode.png');
  await page.screenshot({ path: screenshot });
  t.ok(statSync(screenshot).size > 1000, `screenshot saved: ${screenshot}`);

  await context.close();
  const lines = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'ws');
  t.match(lines, { protocol: 'http', path: '/ws', server: 'ws1' });
  // (Chromium may also open a spare connection that sends nothing: protocol "none", also to the default backend.)
  const pageLine = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'web' && l.protocol === 'http');
  t.match(pageLine, { server: 'web1', method: 'GET' }, 'the page\'s connection is logged too');
});
