import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { probeTls } from '../../src/sniff/tls.js';

/**
 * The sniffer's reading of each fixture against Node's own TLS stack: a
 * server that records the SNI and ALPN list it is offered, then stops the
 * handshake. Valid fixtures must give the same facts; malformed ones must be
 * refused before any SNI is seen, as the sniffer's problem flag assumes.
 */

const fixture = (name: string): Buffer => readFileSync(new URL(`../../fixtures/clienthellos/${name}`, import.meta.url));

interface Offered {
  sni?: string;
  alpn?: readonly string[];
  error?: string;
}

async function offerToNode(bytes: Buffer): Promise<Offered> {
  const offered: Offered = {};
  const server = tls.createServer({
    ALPNCallback: ({ protocols }) => {
      offered.alpn = protocols;
      return protocols[0];
    },
    SNICallback: (name, callback) => {
      offered.sni = name;
      callback(new Error('seen enough'));
    },
  });
  server.on('tlsClientError', (error: NodeJS.ErrnoException) => (offered.error = error.code ?? error.message));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  client.resume();
  client.end(bytes);
  await once(client, 'close');
  await new Promise((resolve) => server.close(resolve));
  return offered;
}

const VALID = [
  'clienthello-chromium-156.bin',
  'clienthello-chromium-156-3-records.bin',
  'clienthello-curl.bin',
  'clienthello-curl-2-records.bin',
  'clienthello-openssl-3.0.bin',
];

for (const file of VALID) {
  t.test(`${file}: Node reads the same SNI and ALPN`, async (t) => {
    const bytes = fixture(file);
    const offered = await offerToNode(bytes);
    const result = probeTls(bytes, { maxBytes: 16384 });
    const facts = result.kind === 'match' ? result.facts?.tls : undefined;
    t.equal(facts?.sni, offered.sni);
    t.same(facts?.alpn, offered.alpn);
  });
}

for (const file of ['clienthello-malformed-session-id.bin', 'clienthello-malformed-extensions.bin']) {
  t.test(`${file}: Node refuses it too`, async (t) => {
    const offered = await offerToNode(fixture(file));
    t.equal(offered.sni, undefined, 'no SNI reached the server');
    t.ok(offered.error, `handshake error ${offered.error}`);
  });
}
