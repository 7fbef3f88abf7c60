/**
 * The bytes the load generator and the bench backend exchange. Every
 * exchange is decided by the client's first bytes, so the same backend
 * serves every scenario, directly or behind any proxy, and the proxy in
 * between sniffs real-looking traffic: HTTP requests, a WebSocket upgrade, a
 * TLS ClientHello, a Flash policy request, or raw bytes (first byte 0x00,
 * which no probe claims, followed by a command byte).
 *
 * Every short-lived exchange is closed by the server first, so that
 * TIME_WAIT lands on listening ports and never exhausts the client's
 * ephemeral ports during connection-rate scenarios.
 */
import { createHash } from 'node:crypto';

/** Raw-bytes commands: the second byte after 0x00. */
export const RAW = {
  /** Discard everything; every SINK_ACK_BYTES answer the running byte count (8 bytes, big endian). */
  sink: 0x53, // 'S'
  /** Send 64 KiB chunks as fast as the client reads, until it goes away. */
  source: 0x4f, // 'O'
  /** Read 64 bytes in all (header included), answer 64 bytes, close. */
  reply: 0x52, // 'R'
  /** Answer one byte 'h' (the connection is spliced end to end), then stay idle; any later byte makes the server close. */
  hold: 0x48, // 'H'
} as const;

export const CHUNK = Buffer.alloc(64 * 1024, 0x61);
export const RAW_SIZE = 64;
export const SINK_ACK_BYTES = 16 * 1024 * 1024;
/**
 * Raw commands are 0x00, the command byte, then padding to 8 bytes: nginx's
 * ssl_preread waits (until its preread_timeout) on fewer than 5 bytes.
 */
export const RAW_HEADER_SIZE = 8;

function rawHeader(command: number, size = RAW_HEADER_SIZE): Buffer {
  const buf = Buffer.alloc(size, 0x2e);
  buf[0] = 0x00;
  buf[1] = command;
  return buf;
}

export const SINK_HEADER = rawHeader(RAW.sink);
export const SOURCE_HEADER = rawHeader(RAW.source);
export const HOLD_HEADER = rawHeader(RAW.hold);
export const RAW_REQUEST = rawHeader(RAW.reply, RAW_SIZE);
export const RAW_RESPONSE = Buffer.alloc(RAW_SIZE, 0x72);

/** An HTTP request that the seed rules send to socket_io (path_beg /socket.io). */
export const HTTP_CLOSE_REQUEST = Buffer.from(
  'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: sniffmux-bench\r\nConnection: close\r\n\r\n',
  'latin1',
);
export const HTTP_KEEPALIVE_REQUEST = Buffer.from(
  'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: sniffmux-bench\r\n\r\n',
  'latin1',
);
export const HTTP_CLOSE_RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok',
  'latin1',
);
export const HTTP_KEEPALIVE_RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
  'latin1',
);

const WS_KEY = 'c25pZmZtdXgtYmVuY2gtIQ==';
const WS_ACCEPT = createHash('sha1').update(WS_KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
/** A browser-like WebSocket upgrade (to /socket.io/, as socket.io does). */
export const WS_UPGRADE_REQUEST = Buffer.from(
  'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: bench.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  'latin1',
);
export const WS_UPGRADE_RESPONSE = Buffer.from(
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${WS_ACCEPT}\r\n\r\n`,
  'latin1',
);
/** A masked text frame of 32 bytes of payload (client to server); the server echoes frames as they come. */
export const WS_FRAME = (() => {
  const payload = Buffer.alloc(32, 0x77);
  const mask = Buffer.from([1, 2, 3, 4]);
  const frame = Buffer.alloc(2 + 4 + payload.length);
  frame[0] = 0x81;
  frame[1] = 0x80 | payload.length;
  mask.copy(frame, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
})();
/** A masked close frame; the server answers an unmasked close frame and closes. */
export const WS_CLOSE = Buffer.from([0x88, 0x80, 1, 2, 3, 4]);
export const WS_CLOSE_REPLY = Buffer.from([0x88, 0x00]);
export const WS_ECHOES = 3;

export const POLICY_REQUEST = Buffer.from('<policy-file-request/>\0', 'latin1');
/** The policy document the bench backend serves (the same allow list the sniffmux bench config serves inline). */
export const POLICY_ALLOW = [{ domain: '*', ports: '80,443,843,8080' }];
export const POLICY_RESPONSE = Buffer.from(
  '<?xml version="1.0"?>\n<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">\n' +
    '<cross-domain-policy>\n  <site-control permitted-cross-domain-policies="master-only"/>\n' +
    '  <allow-access-from domain="*" to-ports="80,443,843,8080"/>\n</cross-domain-policy>\n\0',
  'latin1',
);

/** curl 7.88.1 / OpenSSL 3.0's ClientHello (fixtures/clienthellos/clienthello-curl.bin, 517 bytes; SNI curl.example.test). */
export const CLIENT_HELLO = Buffer.from(
  '1603010200010001fc03031bcc760951c23aa4a854ab86c21023616af787d566a461935bbe3242d9aa6475207cdae7e94cd22806235ea43dc7ee15116faeda9a9248758498e98b954bbb7efb003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010001750000001600140000116375726c2e6578616d706c652e74657374000b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020d06f61bd9fbffb6854ab7c2bcca0daad9596bc34e0f966161ff7e41416cbb97d001500ac00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
  'hex',
);
/** What the backend answers a ClientHello with: 128 bytes that look like the start of a handshake record; then it closes. */
export const TLS_REPLY = (() => {
  const buf = Buffer.alloc(128, 0x5a);
  buf[0] = 0x16;
  buf[1] = 0x03;
  buf[2] = 0x03;
  buf.writeUInt16BE(123, 3);
  return buf;
})();
