import t from 'tap';
import { exchange, firstLine, piecesOf, taggedEcho, type TestServer } from '../helpers/servers.js';
import { readFixtureConfig, startMux, type RunningMux } from '../helpers/mux.js';

/**
 * The seed recipe of the SPEC (fixtures/configs/seed.yaml) end to end: its
 * own rules, with listeners on port 0 and its servers replaced by tagged echo
 * backends that greet with their name.
 */
const tags = ['socket_io', 'sio_tcp', 'silent', 'webapp'] as const;

async function startSeed(t: { teardown(fn: () => unknown): void }, overrides: { delay?: string } = {}): Promise<RunningMux> {
  const backends = new Map<string, TestServer>();
  for (const tag of tags) backends.set(tag, await taggedEcho(tag));
  const raw = readFixtureConfig('seed.yaml');
  for (const fe of raw.frontends) fe.listen = ['127.0.0.1:0'];
  if (overrides.delay) raw.frontends[0].inspect.delay = overrides.delay;
  for (const be of raw.backends) be.servers[0].address = backends.get(be.name)!.address;
  const mux = await startMux(raw);
  t.teardown(async () => {
    await mux.stop();
    for (const b of backends.values()) await b.close();
  });
  return mux;
}

const untilTagAnd = (extra: string) => (r: Buffer) => r.toString('latin1').includes(extra);

t.test('HTTP paths route by prefix; other HTTP to the default', async (t) => {
  const mux = await startSeed(t);
  const port = mux.port('app');
  const cases: [string, string][] = [
    ['GET /socket.io/?EIO=4&transport=polling&t=N8hyd6w HTTP/1.1\r\nHost: x\r\n\r\n', 'socket_io'],
    ['GET /node/chat HTTP/1.1\r\nHost: x\r\n\r\n', 'socket_io'],
    ['POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi', 'webapp'],
    ['GET / HTTP/1.0\r\n\r\n', 'webapp'],
  ];
  for (const [request, tag] of cases) {
    const { received } = await exchange(port, request, { until: untilTagAnd(request.slice(-2)) });
    t.equal(firstLine(received), tag, `${request.split('\r\n')[0]} → ${tag}`);
    t.equal(received.subarray(tag.length + 1).toString('latin1'), request, 'the request arrives byte for byte');
  }
});

t.test('non-HTTP bytes go to the raw TCP backend at once', async (t) => {
  const mux = await startSeed(t, { delay: '3s' });
  const port = mux.port('app');
  for (const first of [Buffer.from([0x00, 0x01, 0x02]), Buffer.from('hello\n'), Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')]) {
    const { received } = await exchange(port, first, { until: (r) => r.length >= 'sio_tcp\n'.length + first.length });
    t.equal(firstLine(received), 'sio_tcp');
    t.same(received.subarray(8), first, 'peeked bytes replayed unchanged');
  }
  const lines = await Promise.all([0, 1, 2].map((i) => mux.waitForLog((l) => l.msg === 'connection' && mux.connections().indexOf(l) === i)));
  for (const line of lines) {
    t.equal(line.backend, 'sio_tcp');
    t.ok((line.timings as { sniff: number }).sniff < 1000, `routed without waiting for the 3 s delay (sniff ${(line.timings as { sniff: number }).sniff} ms)`);
  }
});

t.test('a client that sends nothing goes to the protocol: none route after the delay', async (t) => {
  const mux = await startSeed(t, { delay: '300ms' });
  const { received } = await exchange(mux.port('app'), null, { until: (r) => r.includes(0x0a) });
  t.equal(firstLine(received), 'silent');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.protocol, 'none');
  t.equal(line.backend, 'silent');
  t.ok((line.timings as { sniff: number }).sniff >= 290, 'decided when the inspect delay expired');
});

const POLICY_REQUEST = Buffer.from('<policy-file-request/>\0', 'latin1');

t.test('policy requests are answered inline and on the policy-only listener, then closed', async (t) => {
  const mux = await startSeed(t);
  for (const frontend of ['app', 'flashpolicy']) {
    // In three pieces that arrive separately: nothing may be answered before the last.
    const { received: answer, beforeLastPiece } = await exchange(mux.port(frontend), piecesOf(POLICY_REQUEST, [5, 17]));
    t.equal(beforeLastPiece, 0, `${frontend}: nothing was answered before the last piece`);
    t.equal(answer[answer.length - 1], 0, `${frontend}: the answer ends with a NUL byte`);
    const xml = answer.subarray(0, -1).toString('utf8');
    t.match(xml, /<cross-domain-policy>/, `${frontend}: a policy document`);
    t.match(xml, /<allow-access-from domain="\*" to-ports="80,443,843,8080"\/>/);
    const line = await mux.waitForLog((l) => l.msg === 'connection' && l.frontend === frontend);
    t.equal(line.termination, 'policy-served');
    t.equal(line.protocol, 'flash-policy');
    t.equal(line.bytesIn, POLICY_REQUEST.length);
    t.equal(line.bytesOut, answer.length);
  }
});

t.test('the policy-only listener closes anything else as soon as its bytes rule a policy request out', async (t) => {
  const mux = await startSeed(t);
  const { received } = await exchange(mux.port('flashpolicy'), 'GET / HTTP/1.1\r\n\r\n');
  t.equal(received.length, 0, 'nothing is sent back');
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.frontend === 'flashpolicy');
  t.equal(line.termination, 'bad-request');
  t.equal(line.reason, 'not a policy request', 'the log line says why');
  t.equal(line.backend, null);
});
