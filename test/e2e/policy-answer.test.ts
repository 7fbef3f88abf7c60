import t from 'tap';
import { RawClient } from '../helpers/http.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { taggedEcho } from '../helpers/servers.js';

/**
 * A Flash policy request on a frontend that also routes (flashPolicy: true)
 * is answered without a server: the answer, then a FIN, and the client's
 * further bytes are read and dropped until it closes, so closing never sends
 * a reset that could lose the answer. Whichever path serves it (the native
 * thread for a plain TCP client, else JavaScript), a user sees the same.
 */
const POLICY_REQUEST = Buffer.from('<policy-file-request/>\0', 'latin1');

async function startPolicyMux(t: { teardown(fn: () => unknown): void }, client: string): Promise<RunningMux> {
  const web = await taggedEcho('web');
  const mux = await startMux({
    flashPolicy: { allow: [{ domain: '*', ports: '80,443' }] },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], flashPolicy: true, timeouts: { client }, default: 'web' }],
    backends: [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await web.close();
  });
  return mux;
}

const answered = (r: Buffer) => r.length > 0 && r[r.length - 1] === 0;

t.test('the answer and its FIN come before the client closes; what the client sends meanwhile is dropped and counted', async (t) => {
  const mux = await startPolicyMux(t, '1m');
  const client = await RawClient.connect(mux.port('fe'));
  t.teardown(() => client.close());
  const junk = Buffer.from('junk after the request', 'latin1');
  client.write(Buffer.concat([POLICY_REQUEST, junk]));
  const answer = await client.until((r) => client.isEnded && answered(r));
  t.ok(client.isEnded, 'the answer is followed by a FIN while the client is still open');
  t.match(answer.subarray(0, -1).toString('utf8'), /<allow-access-from domain="\*" to-ports="80,443"\/>/, 'the whole document');
  const more = Buffer.alloc(70_000, 0x61); // more than one read's worth, to be dropped too
  client.socket.end(more);
  await client.closed;
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.frontend === 'fe');
  t.equal(line.termination, 'policy-served');
  t.equal(line.protocol, 'flash-policy');
  t.equal(line.backend, null, 'no server was involved');
  t.equal(line.bytesOut, answer.length, 'bytesOut: the answer');
  t.equal(line.bytesIn, POLICY_REQUEST.length + junk.length + more.length, 'bytesIn: the request and all that followed');
});

t.test('a client that never closes after its answer is closed at timeouts.client', async (t) => {
  const mux = await startPolicyMux(t, '300ms');
  const client = await RawClient.connect(mux.port('fe'));
  t.teardown(() => client.close());
  client.write(POLICY_REQUEST);
  const answer = await client.until((r) => client.isEnded && answered(r));
  t.ok(answered(answer), 'answered');
  // The client never ends its side; the proxy's FIN went with the answer, so its close at the timeout shows in the log line.
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.frontend === 'fe');
  t.equal(line.termination, 'policy-served', 'still logged as served');
  t.equal(line.bytesIn, POLICY_REQUEST.length);
  t.ok((line.timings as { total: number }).total >= 300, `closed after the client timeout (${(line.timings as { total: number }).total} ms)`);
  t.equal(mux.instance.activeConnections, 0, 'and it is gone from the open connections');
});

t.test('a policy request arriving in pieces is answered once whole, on the same path', async (t) => {
  const mux = await startPolicyMux(t, '1m');
  const client = await RawClient.connect(mux.port('fe'));
  t.teardown(() => client.close());
  client.write(POLICY_REQUEST.subarray(0, 5));
  // A routed request on another connection is a round trip through the proxy: by then the 5 bytes were seen.
  const other = await RawClient.connect(mux.port('fe'));
  t.teardown(() => other.close());
  other.write('\x00hello');
  await other.until((r) => r.toString('latin1').includes('hello'));
  t.equal(client.pending.length, 0, 'nothing answered before the request is whole');
  client.write(POLICY_REQUEST.subarray(5));
  const answer = await client.until((r) => client.isEnded && answered(r));
  t.ok(answered(answer), 'answered once whole');
  client.socket.end();
  await client.closed;
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.protocol === 'flash-policy');
  t.equal(line.termination, 'policy-served');
  t.equal(line.bytesIn, POLICY_REQUEST.length);
});
