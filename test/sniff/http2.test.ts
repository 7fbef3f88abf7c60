import t from 'tap';
import { HTTP2_PREFACE, probeHttp2 } from '../../src/sniff/http2.js';

const LIMITS = { maxBytes: 16384 };

t.test('the preface: need-more while a prefix, complete match at 24 bytes', async (t) => {
  t.equal(HTTP2_PREFACE.length, 24);
  for (let length = 0; length < HTTP2_PREFACE.length; length++) {
    t.equal(probeHttp2(HTTP2_PREFACE.subarray(0, length), LIMITS).kind, 'need-more', `${length} bytes`);
  }
  t.same(probeHttp2(HTTP2_PREFACE, LIMITS), { kind: 'match', complete: true });
  const withSettings = Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
  t.same(probeHttp2(withSettings, LIMITS), { kind: 'match', complete: true }, 'frames after it do not matter');
});

t.test('no-match at the first wrong byte', async (t) => {
  for (const text of ['G', 'PRX', 'PRI * HTTP/1.1', 'PRI * HTTP/2.0\r\n\r\nSX']) {
    t.equal(probeHttp2(Buffer.from(text), LIMITS).kind, 'no-match', JSON.stringify(text));
  }
});
