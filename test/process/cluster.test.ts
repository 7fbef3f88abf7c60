/**
 * `global.workers` > 1 with real processes (`node dist/cli.js run`): a
 * cluster primary and its workers sharing one port, the admin listener adding
 * up every worker, SIGHUP and SIGTERM reaching every worker, a dead worker
 * replaced, and start-up errors still one line and exit 1.
 *
 * Listeners are on fixed ports found free just before (bound to port 0, then
 * closed): a config file names the port, as a user's would.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import path from 'node:path';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { runCli, startCli, type LiveCli } from '../helpers/cli.js';
import { metricValue } from '../helpers/admin.js';
import { closedPort, exchange, firstLine, taggedEcho, tcpServer, type TestServer } from '../helpers/servers.js';
import { restartDelay } from '../../src/process/cluster.js';
import { tempDir } from '../helpers/temp-dir.js';
import { eventually } from '../helpers/eventually.js';

type Line = Record<string, any> & { msg: string };

interface Cluster {
  readonly cli: LiveCli;
  readonly file: string;
  readonly port: number;
  readonly adminPort: number;
  /** The worker pids the primary logged at start. */
  readonly workers: number[];
  logs(): Line[];
  connections(): Line[];
  get(pathname: string): Promise<{ status: number; body: string }>;
}

function writeConfig(text: string): string {
  const dir = tempDir('smx-cluster-');
  const file = path.join(dir, 'sniffmux.yaml');
  writeFileSync(file, text);
  return file;
}

function yaml(opts: { port: number; adminPort: number; workers?: number; backends: Record<string, TestServer>; use: string; grace?: string; balance?: string }): string {
  const backends = Object.entries(opts.backends)
    .map(([name, server]) => `  - name: ${name}\n    servers: [{ name: ${name}1, address: ${server.address} }]\n`)
    .join('');
  return (
    `global: { workers: ${opts.workers ?? 2}, grace: ${opts.grace ?? '5s'}${opts.balance ? `, workerBalance: ${opts.balance}` : ''} }\n` +
    `admin: { listen: 127.0.0.1:${opts.adminPort} }\n` +
    `frontends:\n  - name: app\n    listen: [127.0.0.1:${opts.port}]\n    inspect: { delay: 50ms }\n    default: ${opts.use}\n` +
    `backends:\n${backends}`
  );
}

function parseLogs(output: string): Line[] {
  const lines: Line[] = [];
  for (const text of output.split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(text) as Line);
    } catch {
      // A line still being written.
    }
  }
  return lines;
}

async function startCluster(t: Test, config: (ports: { port: number; adminPort: number }) => string): Promise<Cluster> {
  const port = await closedPort();
  const adminPort = await closedPort();
  const file = writeConfig(config({ port, adminPort }));
  const cli = startCli(['run', '-c', file]);
  t.teardown(async () => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGTERM');
    await cli.exited();
  });
  await cli.waitFor(/"msg":"sniffmux started"/);
  const logs = (): Line[] => parseLogs(cli.output());
  const started = logs().find((l) => l.msg === 'sniffmux started')!;
  return {
    cli,
    file,
    port,
    adminPort,
    workers: started.workerPids as number[],
    logs,
    connections: () => logs().filter((l) => l.msg === 'connection'),
    async get(pathname) {
      const response = await fetch(`http://127.0.0.1:${adminPort}${pathname}`);
      return { status: response.status, body: await response.text() };
    },
  };
}

async function backend(t: Test, tag: string): Promise<TestServer> {
  const server = await taggedEcho(tag);
  t.teardown(() => server.close());
  return server;
}

/**
 * Which of these processes hold the socket listening on `port`, as `ss -ltnp`
 * would show it: the LISTEN entry of /proc/net/tcp{,6}, then whose descriptors
 * point at its inode.
 */
function listeningHolders(port: number, pids: readonly number[]): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  return pids.filter((pid) =>
    readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false; // closed meanwhile
      }
    }),
  );
}

/** One short connection: the backend's tag, once the echo came back. */
async function tagOf(port: number, send = 'ping'): Promise<string> {
  const reply = await exchange(port, send, { until: (r) => r.toString('latin1').includes(send) });
  return firstLine(reply.received);
}

/** Opens a connection and waits for the backend's greeting; the socket stays open. */
function hold(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('held'));
    socket.once('data', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The sum of every sample of a metric whose line starts with `prefix`. */
function metricSum(text: string, prefix: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

t.test('workerBalance: kernel: the workers accept from the shared port themselves, and serve every connection', async (t) => {
  const a = await backend(t, 'A');
  const c = await startCluster(t, (p) => yaml({ ...p, backends: { a }, use: 'a', balance: 'kernel' }));
  const N = 24;
  // In parallel, so that both workers are woken by the same arrivals (the kernel gives each to whichever accepts first).
  const tags = await Promise.all(Array.from({ length: N }, (_, i) => tagOf(c.port, `ping ${i}`)));
  t.ok(tags.every((tag) => tag === 'A'), 'every connection reached the backend');
  await eventually(`${N} connection log lines`, () => c.connections().length === N);
  const pids = new Set(c.connections().map((l) => l.pid as number));
  t.ok([...pids].every((pid) => c.workers.includes(pid)), `served by workers only (${[...pids].join(', ')}), never the primary`);
  t.same(listeningHolders(c.port, c.workers).sort(), [...c.workers].sort(), 'each worker holds the listening socket itself (it accepts)');
});

t.test('restartDelay backs off 100 ms, 200 ms, 400 ms … up to 10 s', async (t) => {
  t.same([1, 2, 3, 4, 8, 20].map(restartDelay), [100, 200, 400, 800, 10_000, 10_000]);
});

t.test('two workers share one port; /status.json and /metrics add them up', async (t) => {
  const a = await backend(t, 'A');
  const c = await startCluster(t, (p) => yaml({ ...p, backends: { a }, use: 'a' }));
  t.equal(c.workers.length, 2, 'the primary started two workers');
  t.notOk(c.workers.includes(c.cli.child.pid!), 'the primary is not a worker');

  const N = 16;
  for (let i = 0; i < N; i++) t.equal(await tagOf(c.port, `ping ${i}`), 'A');
  await eventually(`${N} connection log lines`, () => c.connections().length === N);
  const pids = new Set(c.connections().map((l) => l.pid as number));
  t.same([...pids].sort(), [...c.workers].sort(), 'both workers served connections, the primary none');
  t.same(listeningHolders(c.port, c.workers), [], 'workerBalance primary (the default): no worker holds the listening socket, the primary accepts and hands over');
  t.same(listeningHolders(c.port, [c.cli.child.pid!]), [c.cli.child.pid!], 'the primary holds it');
  t.ok(
    c.logs().filter((l) => l.msg === 'listening').every((l) => l.port === c.port),
    'every worker listens on the one configured port',
  );

  const status = JSON.parse((await c.get('/status.json')).body);
  t.equal(status.sniffmux.pid, c.cli.child.pid, 'sniffmux.pid is the primary');
  t.same(status.workers.map((w: any) => w.pid).sort(), [...c.workers].sort());
  for (const w of status.workers) {
    t.equal(w.total, c.connections().filter((l) => l.pid === w.pid).length, `worker ${w.id} counts the connections it logged`);
  }
  t.equal(status.frontends[0].total, N, 'frontend total = the sum over workers');
  t.equal(status.frontends[0].listen[0].bound, `127.0.0.1:${c.port}`);
  t.equal(status.backends[0].total, N);
  t.equal(status.backends[0].servers[0].total, N);
  t.equal(status.backends[0].servers[0].state, 'up');
  t.equal(status.connections.active, 0);

  const metrics = (await c.get('/metrics')).body;
  t.equal(metricSum(metrics, 'sniffmux_connections_total{frontend="app"'), N, 'sniffmux_connections_total = the sum over workers');
  t.equal(metricValue(metrics, 'sniffmux_server_connections_total{backend="a",server="a1"}'), N);
  t.equal(metricValue(metrics, 'sniffmux_sniff_duration_seconds_count{frontend="app",protocol="other"}'), N, 'histograms are added up');
  t.equal(metricValue(metrics, 'sniffmux_server_up{backend="a",server="a1"}'), 1, 'server_up is not summed');
  t.equal(metricValue(metrics, 'sniffmux_build_info{version="0.1.0"}') ?? metricSum(metrics, 'sniffmux_build_info{'), 1);
  t.equal(metricValue(metrics, 'sniffmux_workers{state="live"}'), 2);
  t.equal(metricValue(metrics, 'sniffmux_workers{state="configured"}'), 2);
  t.match(metrics, /^process_resident_memory_bytes \d+/m, "the workers' process metrics");

  // Connections open now, spread over the workers.
  const held = await Promise.all([0, 1, 2, 3].map(() => hold(c.port)));
  t.teardown(() => held.forEach((s) => s.destroy()));
  const open = JSON.parse((await c.get('/status.json')).body);
  t.equal(open.connections.active, 4);
  t.equal(open.frontends[0].active, 4);
  t.equal(metricValue((await c.get('/metrics')).body, 'sniffmux_active_connections{frontend="app"}'), 4);

  const health = await c.get('/healthz');
  t.same(health, { status: 200, body: 'ok\n' });
  const page = await c.get('/status');
  t.equal(page.status, 200);
  t.match(page.body, /workers <b>2<\/b>/);
});

t.test('SIGHUP on the primary reaches every worker; an invalid file is logged once and the old config stays', async (t) => {
  const a = await backend(t, 'A');
  const b = await backend(t, 'B');
  let ports = { port: 0, adminPort: 0 };
  const c = await startCluster(t, (p) => {
    ports = p;
    return yaml({ ...p, backends: { a, b }, use: 'a' });
  });
  for (let i = 0; i < 6; i++) t.equal(await tagOf(c.port), 'A');

  writeFileSync(c.file, yaml({ ...ports, backends: { a, b }, use: 'b' }));
  c.cli.child.kill('SIGHUP');
  await c.cli.waitFor(/"msg":"config reloaded"/);
  const N = 12;
  for (let i = 0; i < N; i++) t.equal(await tagOf(c.port), 'B', `new connection ${i} takes the new route`);
  await eventually('the new connections logged', () => c.connections().filter((l) => l.backend === 'b').length === N);
  const viaB = c.connections().filter((l) => l.backend === 'b');
  t.same([...new Set(viaB.map((l) => l.pid))].sort(), [...c.workers].sort(), 'both workers run the new route');
  t.equal(c.logs().filter((l) => l.msg === 'config reloaded').length, 1, 'logged once, by the primary');

  writeFileSync(c.file, 'frontends: [ this is not valid');
  c.cli.child.kill('SIGHUP');
  await c.cli.waitFor(/"msg":"reload failed: keeping the running config"/);
  for (let i = 0; i < 4; i++) t.equal(await tagOf(c.port), 'B', 'the running config stays');
  const failures = c.logs().filter((l) => l.msg === 'reload failed: keeping the running config');
  t.equal(failures.length, 1, 'an invalid file is logged once');
  t.equal(failures[0]!.pid, c.cli.child.pid);
  t.match(failures[0]!.problems[0], /sniffmux\.yaml:1:\d+: YAML syntax error/);
});

t.test('SIGTERM on the primary: every worker drains, then exit 0', async (t) => {
  const a = await backend(t, 'A');
  const c = await startCluster(t, (p) => yaml({ ...p, backends: { a }, use: 'a', grace: '10s' }));
  // Two open sessions, one per worker (round-robin), that end on their own during the grace period.
  const sessions = await Promise.all([hold(c.port), hold(c.port)]);
  c.cli.child.kill('SIGTERM');
  await c.cli.waitFor(/"msg":"stopping: draining connections"/);
  await eventually('both workers draining', () => c.logs().filter((l) => l.msg === 'worker draining').length === 2);
  for (const socket of sessions) {
    const echoed = new Promise((resolve) => socket.on('data', (d: Buffer) => d.toString().includes('still here') && resolve(true)));
    socket.write('still here');
    t.ok(await echoed, 'an open session keeps flowing while draining');
    socket.end();
  }
  t.equal(await c.cli.exited(), 0);
  const logs = c.logs();
  t.equal(logs.filter((l) => l.msg === 'worker stopped').length, 2);
  t.equal(logs.filter((l) => l.msg === 'connection' && l.termination === 'client-close').length, 2, 'the sessions finished normally');
  t.equal(logs.at(-1)!.msg, 'stopped');
  t.equal(logs.at(-1)!.pid, c.cli.child.pid);
});

t.test('a worker that dies is logged and replaced', async (t) => {
  const a = await backend(t, 'A');
  const c = await startCluster(t, (p) => yaml({ ...p, backends: { a }, use: 'a' }));
  const [victim, survivor] = c.workers as [number, number];
  process.kill(victim, 'SIGKILL');
  await c.cli.waitFor(/"msg":"worker died: starting a new one"/);
  const [line] = c.logs().filter((l) => l.msg === 'worker died: starting a new one');
  t.match(line, { pid: c.cli.child.pid, workerPid: victim, signal: 'SIGKILL', restartIn: 100 });
  await c.cli.waitFor(/"msg":"worker started"/);
  const status = JSON.parse((await c.get('/status.json')).body);
  const pids: number[] = status.workers.map((w: any) => w.pid);
  t.equal(pids.length, 2);
  t.ok(pids.includes(survivor) && !pids.includes(victim), 'the dead worker was replaced');
  for (let i = 0; i < 6; i++) t.equal(await tagOf(c.port), 'A');
  t.equal(metricValue((await c.get('/metrics')).body, 'sniffmux_worker_restarts_total'), 1);
});

t.test('start-up errors with workers: 2 are still one line and exit 1', async (t) => {
  const a = await backend(t, 'A');

  const bad = writeConfig(
    `global: { workers: 2 }\nfrontends:\n  - name: app\n    listen: [127.0.0.1:${await closedPort()}]\n    default: nowhere\nbackends:\n  - name: a\n    servers: [{ name: a1, address: ${a.address} }]\n`,
  );
  const invalid = await runCli(['run', '-c', bad]);
  t.equal(invalid.code, 1);
  t.equal(invalid.stderr, `sniffmux: frontends[0].default: unknown backend 'nowhere'\n`);
  t.equal(invalid.stdout, '', 'no worker was started');

  const busy = await tcpServer(() => {});
  t.teardown(() => busy.close());
  const inUse = await runCli(['run', '-c', writeConfig(yaml({ port: busy.port, adminPort: await closedPort(), backends: { a }, use: 'a' }))]);
  t.equal(inUse.code, 1);
  t.equal(inUse.stderr, `sniffmux: cannot listen on 127.0.0.1:${busy.port}: address already in use\n`, 'a worker that cannot bind: one line');

  const adminInUse = await runCli(['run', '-c', writeConfig(yaml({ port: await closedPort(), adminPort: busy.port, backends: { a }, use: 'a' }))]);
  t.equal(adminInUse.code, 1);
  t.equal(adminInUse.stderr, `sniffmux: cannot listen on 127.0.0.1:${busy.port}: address already in use\n`, 'the admin address: one line');
});

t.test('workers: 1 is a single process with no cluster primary', async (t) => {
  const a = await backend(t, 'A');
  const c = await startCluster(t, (p) => yaml({ ...p, workers: 1, backends: { a }, use: 'a' }));
  t.equal(await tagOf(c.port), 'A');
  await eventually('the connection logged', () => c.connections().length === 1);
  t.equal(c.connections()[0]!.pid, c.cli.child.pid, 'the process itself serves');
  t.notOk('worker' in c.connections()[0]!);
  const status = JSON.parse((await c.get('/status.json')).body);
  t.equal(status.sniffmux.pid, c.cli.child.pid);
  t.notOk('workers' in status);
  t.equal(status.frontends[0].total, 1);
});
