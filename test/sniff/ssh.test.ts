import t from 'tap';
import { probeSsh } from '../../src/sniff/ssh.js';

const LIMITS = { maxBytes: 16384 };
const kind = (text: string) => probeSsh(Buffer.from(text, 'latin1'), LIMITS).kind;

t.test('SSH banners', async (t) => {
  const cases: [string, string][] = [
    ['', 'need-more'],
    ['S', 'need-more'],
    ['SSH-', 'need-more'],
    ['SSH-2.0', 'need-more'],
    ['SSH-1.9', 'need-more'],
    ['SSH-2.0-', 'match'],
    ['SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n', 'match'],
    ['SSH-1.99-Cisco-1.25\r\n', 'match'],
    ['SSH-1.5-old', 'no-match'],
    ['SSH-2.1-', 'no-match'],
    ['SSH-2.0x', 'no-match'],
    ['ssh-2.0-', 'no-match'],
    ['SSX', 'no-match'],
    ['GET', 'no-match'],
  ];
  for (const [text, expected] of cases) t.equal(kind(text), expected, JSON.stringify(text));
  t.same(probeSsh(Buffer.from('SSH-2.0-x'), LIMITS), { kind: 'match', complete: true });
});
