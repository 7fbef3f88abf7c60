/**
 * Issue 7, item 1, over real sockets: time-boxed fuzzing (fast-check) of
 * what a client can send first — mutated ClientHellos, HTTP heads, PROXY v1
 * and v2 headers, policy requests, SSH banners and plain garbage — cut into
 * random TCP segments with random pauses, against a running sniffmux with
 * a PROXY-protocol listener, TLS termination, http mode and a raw TCP route.
 * The unit-level fuzzers (test/fuzz, test/config/fuzz, test/route/fuzz)
 * cover the parsers, the rule compiler and the config loader one by one;
 * this one checks what they add up to:
 *
 * - no exception escapes (the process's uncaughtException stays silent);
 * - every connection ends with exactly one log line, and every rejection
 *   says why (a non-empty reason);
 * - the outcome is one of the documented ones: the exact bytes replayed to
 *   the raw backend (checked against what was sent, PROXY header removed),
 *   the policy document, an HTTP response, or a plain close;
 * - while sniffing, no connection holds more than inspect.maxBytes plus one
 *   read;
 * - a real client is served afterwards.
 */
import t from 'tap';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { encodeProxyV1, encodeProxyV2 } from '../../src/sniff/proxy-protocol.js';
import { makeCerts } from '../helpers/certs.js';
import { startMux } from '../helpers/mux.js';
import { taggedEcho } from '../helpers/servers.js';
import { fmt, mb, rssSampler, scale, scenario, sleep } from './lib.js';

const TIME_BOX = scale(3000, 60_000);
const MAX_BYTES = 2048;
const fixture = (name: string): Buffer => readFileSync(new URL(`../../fixtures/clienthellos/${name}`, import.meta.url));
const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const endpoints = { source: { address: '192.0.2.1', port: 1234 }, destination: { address: '198.51.100.2', port: 443 } };

const SEEDS: readonly Buffer[] = [
  fixture('clienthello-chromium-156.bin'),
  fixture('clienthello-curl.bin'),
  fixture('clienthello-openssl-3.0.bin'),
  fixture('clienthello-sslv2-compat.bin'),
  fixture('clienthello-malformed-extensions.bin'),
  latin1('GET /api/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello'),
  latin1('POST /api/y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
  latin1('GET /raw HTTP/1.0\r\n\r\n'),
  latin1('GET /api/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
  latin1('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  latin1('SSH-2.0-OpenSSH_9.2p1\r\n'),
  latin1('<policy-file-request/>\0'),
  Buffer.concat([encodeProxyV1(endpoints), latin1('GET /api/p HTTP/1.1\r\nHost: a\r\n\r\n')]),
  Buffer.concat([encodeProxyV2(endpoints, { alpn: 'h2', authority: 'a.example' }), latin1('SSH-2.0-x\r\n')]),
  encodeProxyV2(null, { command: 'LOCAL' }),
  latin1('PROXY UNKNOWN\r\n\x00\x01\x02'),
];

/** A seed cut, with a few bytes flipped and some appended. */
const input = fc
  .record({
    seed: fc.constantFrom(...SEEDS),
    cut: fc.nat(),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    tail: fc.uint8Array({ maxLength: 64 }),
    garbage: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    anyListener: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  })
  .chain(({ seed, cut, flips, tail, garbage, anyListener }) => {
    // The listener the seed was meant for (PROXY headers to the PROXY listener), now and then another.
    const proxySeed = seed.subarray(0, 5).toString('latin1') === 'PROXY' || seed[0] === 0x0d;
    const forProxy = anyListener ? !proxySeed : proxySeed;
    const bytes = garbage ? Buffer.from(tail) : Buffer.from(seed.subarray(0, cut % (seed.length + 1)));
    for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
    const all = garbage ? bytes : Buffer.concat([bytes, tail]);
    // Cut points and pauses: the same bytes in random segments.
    return fc.record({
      bytes: fc.constant(all),
      cuts: fc.array(fc.nat({ max: Math.max(0, all.length) }), { maxLength: 4 }),
      pause: fc.integer({ min: 0, max: 5 }),
      // Mostly half-closed (the echo then answers at once); sometimes left open, to meet the inspect delay.
      end: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      proxied: fc.constant(forProxy),
      big: fc.boolean(),
    });
  });

const OUTCOME_NAMES: Record<string, string> = {
  echo: 'replayed to the raw backend',
  closed: 'closed',
  http: 'HTTP answer',
  policy: 'policy served',
  other: 'TLS alert (terminating listener)',
};

type Outcome = { kind: 'echo'; replayed: Buffer } | { kind: 'policy' } | { kind: 'http' } | { kind: 'closed' } | { kind: 'other'; head: string };

t.test('bad input on the wire', async (t) => {
  const certs = makeCerts({ 'fuzz.test': ['fuzz.test'] });
  const echo = await taggedEcho('echo');
  const web = http.createServer((req, res) => (req.resume(), req.on('end', () => res.end('ok'))));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const frontend = (name: string, extra: Record<string, unknown>) => ({
    name,
    inspect: { delay: '150ms', maxBytes: MAX_BYTES },
    timeouts: { client: '2s', handshake: '500ms', httpRequest: '500ms' },
    flashPolicy: true,
    rules: [
      { if: { all: [{ protocol: 'http' }, { path: { prefix: '/api' } }] }, use: 'web' },
      { if: { protocol: ['http', 'ssh', 'http2', 'other'] }, use: 'echo' },
    ],
    ...extra,
  });
  const mux = await startMux(
    {
      frontends: [
        frontend('plain', { listen: ['127.0.0.1:0'] }),
        frontend('proxied', { listen: [{ address: '127.0.0.1:0', proxyProtocol: true }] }),
        frontend('secure', { listen: ['127.0.0.1:0'], tls: { certificates: [{ cert: certs['fuzz.test']!.cert, key: certs['fuzz.test']!.key }] } }),
      ],
      backends: [
        { name: 'echo', servers: [{ name: 'e1', address: echo.address }] },
        { name: 'web', mode: 'http', servers: [{ name: 'w1', address: `127.0.0.1:${(web.address() as net.AddressInfo).port}` }] },
      ],
    },
    { level: 'debug' },
  );
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  t.teardown(async () => {
    process.removeListener('uncaughtException', onUncaught);
    await mux.stop();
    await echo.close();
    web.closeAllConnections();
    web.close();
  });
  const policy = mux.instance.frontends[0]!.policyResponse;
  const headerLength = (bytes: Buffer): number => {
    // What sniffmux consumes on the proxied listener: the v1 line or the v2 header, when valid.
    if (bytes.subarray(0, 6).toString('latin1') === 'PROXY ') {
      const end = bytes.indexOf('\r\n');
      return end === -1 ? -1 : end + 2;
    }
    if (bytes.length >= 16 && bytes.subarray(0, 12).equals(Buffer.from('0d0a0d0a000d0a515549540a', 'hex'))) return 16 + bytes.readUInt16BE(14);
    return -1;
  };

  let maxHeld = 0;
  const sampleHeld = (): void => {
    for (const c of mux.instance.openConnections()) {
      // A connection the native thread sniffs (FastConnection) holds no bytes here: they stay in the kernel, peeked.
      const held = (c as unknown as { peeked?: Buffer }).peeked?.length ?? 0;
      maxHeld = Math.max(maxHeld, held);
    }
  };
  const sampler = setInterval(sampleHeld, 5);

  /** One connection: the bytes in segments, then (maybe) FIN; resolves with what came back. */
  function attempt(port: number, bytes: Buffer, cuts: number[], pause: number, end: boolean): Promise<{ received: Buffer; sent: Buffer }> {
    return new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve({ received: Buffer.concat(chunks), sent: bytes });
      };
      // A connection routed to the echo that was not half-closed stays open: 600 ms is past every sniffmux timeout here but the tunnel's.
      const timer = setTimeout(finish, 600);
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('end', finish);
      socket.on('error', finish);
      socket.on('close', finish);
      socket.on('connect', async () => {
        const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
        let at = 0;
        for (const point of [...points, bytes.length]) {
          if (socket.destroyed) return;
          if (point > at) socket.write(bytes.subarray(at, point));
          at = point;
          if (pause) await sleep(pause);
        }
        if (end && !socket.destroyed) socket.end();
      });
    });
  }

  const outcomes: Record<string, number> = {};
  let runs = 0;
  let mismatches = 0;
  const rss = rssSampler();
  await scenario(t, 'bad input: fuzzed first bytes over the wire', async (t) => {
    await fc.assert(
      fc.asyncProperty(fc.array(input, { minLength: 16, maxLength: 16 }), (batch) => Promise.all(batch.map(one)).then(() => undefined)),
      { numRuns: 1_000_000, interruptAfterTimeLimit: TIME_BOX, markInterruptAsFailure: false },
    );
    async function one({ bytes, cuts, pause, end, proxied, big }: { bytes: Buffer; cuts: number[]; pause: number; end: boolean; proxied: boolean; big: boolean }): Promise<void> {
        runs++;
        // Now and then more than inspect.maxBytes: the sniffer must stop at its budget.
        const payload = big ? Buffer.concat([bytes, Buffer.alloc(MAX_BYTES * 2, 0x41)]) : bytes;
        const frontend = proxied ? 'proxied' : payload[0] === 0x16 ? 'secure' : 'plain';
        const { received } = await attempt(mux.port(frontend), payload, cuts, pause, end);
        let outcome: Outcome;
        const text = received.toString('latin1');
        if (text.startsWith('echo\n')) outcome = { kind: 'echo', replayed: received.subarray(5) };
        else if (received.equals(policy)) outcome = { kind: 'policy' };
        else if (text.startsWith('HTTP/1.1 ')) outcome = { kind: 'http' };
        else if (received.length === 0) outcome = { kind: 'closed' };
        else outcome = { kind: 'other', head: text.slice(0, 40) };
        outcomes[outcome.kind] = (outcomes[outcome.kind] ?? 0) + 1;
        if (outcome.kind === 'other' && frontend !== 'secure') throw new Error(`unexpected answer ${JSON.stringify(outcome.head)}`);
        if (outcome.kind === 'echo') {
          // The echo got the client's bytes from the first one after the PROXY header, unchanged (a prefix while not half-closed).
          const skip = frontend === 'proxied' ? headerLength(payload) : 0;
          const expected = payload.subarray(Math.max(0, skip));
          const replayed = outcome.replayed;
          const ok = end ? replayed.equals(expected) : expected.subarray(0, replayed.length).equals(replayed);
          if (!ok) {
            mismatches++;
            throw new Error(`replayed bytes differ: sent ${expected.length}, replayed ${replayed.length}`);
          }
        }
    }
    clearInterval(sampler);
    await sleep(1200);
    const peak = rss.stop();
    t.same(uncaught, [], 'no exception escaped');
    t.ok(runs > 20, `${fmt(runs)} fuzzed connections in ${TIME_BOX / 1000} s: ${JSON.stringify(outcomes)}`);
    t.equal(mismatches, 0, 'every replay to the raw backend was byte-exact');
    t.ok(maxHeld <= MAX_BYTES + 65536, `while sniffing, no connection held more than inspect.maxBytes plus one read (max ${fmt(maxHeld)} bytes)`);
    const lines = mux.connections().length;
    t.ok(lines >= runs, `one connection log line per connection (${fmt(lines)} for ${fmt(runs)} + real clients)`);
    t.equal(mux.instance.activeConnections, 0, 'none left open');
    // Every connection closed for bad input says why on its own log line.
    const rejections = mux.connections().filter((l) => l.termination === 'bad-request' || l.termination === 'tls-error');
    t.ok(
      rejections.length > 0 && rejections.every((l) => typeof l.reason === 'string' && l.reason.length > 0),
      `all ${fmt(rejections.length)} rejections say why in their connection line (e.g. ${JSON.stringify([...new Set(rejections.map((l) => String(l.reason).replace(/\d+/g, 'N')))].slice(0, 4))})`,
    );
    const fresh = await attempt(mux.port('plain'), latin1('SSH-2.0-after\r\nstill here'), [], 0, true);
    t.equal(fresh.received.toString('latin1'), 'echo\nSSH-2.0-after\r\nstill here', 'a real client is served afterwards');
    return {
      load: `${fmt(runs)} fuzzed connections in ${TIME_BOX / 1000} s (random segments and pauses)`,
      faults: 'mutated ClientHellos, HTTP heads, PROXY v1/v2 headers, policy requests, SSH banners, garbage, inputs over inspect.maxBytes',
      bytesLost: mismatches,
      maxRssMB: mb(peak),
      rssOf: 'test process' as const,
      figures: `outcomes: ${Object.entries(outcomes).map(([k, v]) => `${OUTCOME_NAMES[k] ?? k} ${fmt(v)}`).join(', ')}; replays byte-exact; max held while sniffing ${fmt(maxHeld)} B (maxBytes ${fmt(MAX_BYTES)}); ${fmt(rejections.length)} rejections, each with a reason; no exception`,
    };
  });
});
