/**
 * /status in a real browser: headless Chromium loads the page of a mux with
 * a realistic mix of traffic and one backend partly down and one fully
 * down, checks that nothing is blocked or broken (CSP, script errors), takes
 * the screenshot the README shows (docs/status.png), and watches the page
 * refresh itself when a server goes down.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { closedPort, exchange, taggedEcho, type TestServer } from '../helpers/servers.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../helpers/browser.js';

const ARGS = CHROMIUM_ARGS;
const REPO = path.resolve(import.meta.dirname, '../..');

/** A web server with /health, answering every other path with a page of `size` bytes. */
async function webServer(t: Test, name: string, size = 2048): Promise<string> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end(req.url === '/health' ? 'ok' : `${name}:`.padEnd(size, '.'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

async function traffic(mux: RunningMux, policyPort: number): Promise<void> {
  const app = mux.port('app');
  const get = (p: string): Promise<unknown> => exchange(app, `GET ${p} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n`);
  await Promise.all(Array.from({ length: 24 }, (_, i) => get(`/page/${i}`)));
  await Promise.all(Array.from({ length: 6 }, () => get('/socket.io/?EIO=4&transport=polling')));
  await Promise.all(Array.from({ length: 2 }, () => get('/reports/today')));
  const payload = Buffer.alloc(48 * 1024, 'x');
  await Promise.all(Array.from({ length: 8 }, () => exchange(app, payload, { until: (r) => r.length >= payload.length + 5 })));
  await Promise.all(Array.from({ length: 3 }, () => exchange(policyPort, '<policy-file-request/>\0')));
  await mux.waitForLog(() => mux.connections().length >= 43);
}

// Missing Chromium fails in CI (which installs it) and is a loud skip on a developer's machine.
const missing = existsSync(CHROMIUM) ? null : `Chromium not found at ${CHROMIUM}: install it with 'apt-get install -y chromium' (.ci/run does)`;
if (missing !== null && !process.env.CI) console.error(`\n!!!!! SKIPPING the /status screenshot test: ${missing} !!!!!\n`);

t.test('the /status page in headless Chromium', { skip: missing !== null && !process.env.CI ? missing : false }, async (t) => {
  if (missing !== null) {
    t.fail(missing);
    return;
  }
  const { chromium } = await import('playwright-core');

  const web = [await webServer(t, 'web1'), await webServer(t, 'web2')];
  const sio = await webServer(t, 'node1', 512);
  const tcp: TestServer = await taggedEcho('tcp1');
  t.teardown(() => tcp.close());
  const dead = [await closedPort(), await closedPort(), await closedPort()];
  const mux = await startMux({
    admin: { listen: '127.0.0.1:0' },
    flashPolicy: { allow: [{ domain: '*.example.com', ports: '80,443,843' }] },
    frontends: [
      {
        name: 'app',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '200ms' },
        flashPolicy: true,
        rules: [
          { if: { protocol: 'http', path: { prefix: '/socket.io' } }, use: 'socket_io' },
          { if: { protocol: 'http', path: { prefix: '/reports' } }, use: 'reports' },
          { if: { not: { protocol: 'http' } }, use: 'sio_tcp' },
        ],
        default: 'webapp',
      },
      { name: 'flashpolicy', listen: ['127.0.0.1:0'], flashPolicy: true },
    ],
    backends: [
      {
        name: 'webapp',
        mode: 'tcp',
        healthCheck: { type: 'http', path: '/health', expect: '2xx', interval: '150ms', rise: 2, fall: 2, timeout: '500ms' },
        servers: [
          { name: 'web1', address: web[0], weight: 2 },
          { name: 'web2', address: web[1] },
          { name: 'web3', address: `127.0.0.1:${dead[0]}` },
        ],
      },
      {
        name: 'socket_io',
        healthCheck: { type: 'tcp', interval: '150ms' },
        servers: [
          { name: 'node1', address: sio, maxconn: 2000 },
          { name: 'node2', address: `127.0.0.1:${dead[1]}`, backup: true },
        ],
      },
      { name: 'sio_tcp', healthCheck: { interval: '150ms', rise: 1, fall: 1 }, servers: [{ name: 'tcp1', address: tcp.address }] },
      {
        name: 'reports',
        retries: 0,
        healthCheck: { type: 'http', path: '/health', interval: '150ms', fall: 1 },
        servers: [{ name: 'rep1', address: `127.0.0.1:${dead[2]}` }],
      },
    ],
  });
  t.teardown(() => mux.stop());
  await Promise.all(['web3', 'node2', 'rep1'].map((server) => mux.waitForLog((l) => l.msg === 'server down' && l.server === server)));
  await traffic(mux, mux.port('flashpolicy'));
  // A long-lived session, so the page shows something active.
  const open = net.connect(mux.port('app'), '127.0.0.1');
  t.teardown(() => open.destroy());
  await new Promise<void>((resolve) => open.once('data', () => resolve()).write('hello'));

  const profile = mkdtempSync(path.join(tmpdir(), 'sniffmux-chromium-'));
  t.teardown(() => rmSync(profile, { recursive: true, force: true }));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1440, height: 900 },
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith('http://127.0.0.1:') && !r.url().startsWith('data:')) problems.push(`external request: ${r.url()}`);
  });

  const { port } = mux.instance.adminAddress()!;
  const response = await page.goto(`http://127.0.0.1:${port}/status`);
  t.equal(response?.status(), 200);
  t.match(await page.title(), /^sniffmux · 3 servers down$/);
  t.equal(await page.locator('section.card').count(), 4, 'one card per backend');
  t.equal(await page.locator('section.card.degraded h3').textContent(), 'webapp');
  t.equal(await page.locator('section.card.down h3').textContent(), 'reports');
  t.equal(await page.locator('tr.down').count(), 3, 'three server rows marked down');
  // The colours an operator goes by: green up, red down.
  const colour = (selector: string): Promise<string> => page.locator(selector).first().evaluate((el) => getComputedStyle(el).color);
  t.equal(await colour('tr.up .pill.up'), 'rgb(26, 127, 55)');
  t.equal(await colour('tr.down .pill.down'), 'rgb(207, 34, 46)');

  const shot = path.join(t.testdir(), 'status.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(existsSync(shot), 'screenshot taken');
  // The README's picture is refreshed on request only, so a test run leaves the tree clean.
  if (process.env.UPDATE_SCREENSHOTS) {
    mkdirSync(path.join(REPO, 'docs'), { recursive: true });
    copyFileSync(shot, path.join(REPO, 'docs/status.png'));
  }

  // The page refreshes itself: take sio_tcp's only server away and watch its card turn red.
  await page.goto(`http://127.0.0.1:${port}/status?refresh=1`);
  t.equal(await page.locator('section.card.up h3', { hasText: 'sio_tcp' }).count(), 1);
  open.destroy();
  await tcp.close();
  await page.waitForFunction(() => [...document.querySelectorAll('section.card.down h3')].some((h) => h.textContent === 'sio_tcp'), undefined, {
    timeout: 10_000,
  });
  t.pass('the open page showed sio_tcp going down without a reload');
  t.same(problems, [], 'no script errors, CSP violations or external requests');
});
