/**
 * The configuration's JSON Schema: the single source of truth for keys,
 * types, limits and defaults (ajv fills the defaults in). It is plain data so
 * it can be shipped and printed (`sniffmux check --schema`, editor support).
 *
 * Two local conventions:
 * - `format` names a checker in formats.ts, which also words its message;
 * - `x-messages` maps an ajv keyword to the line a user should read instead
 *   of ajv's own (see messages.ts).
 *
 * The schema deliberately has no anyOf/oneOf: "a string or a list" is a union
 * type with keywords that only apply to one side, so ajv reports one precise
 * error instead of one per alternative.
 */
import { ROUTE_PROTOCOLS } from '../sniff/probe.js';
import { MAX_DURATION_MS } from './duration.js';
import { PORT_PROBLEM } from './address.js';

type Schema = { readonly [key: string]: unknown };

const NAME: Schema = {
  type: 'string',
  pattern: '^[A-Za-z0-9_.-]+$',
  'x-messages': { pattern: "must contain only letters, digits, '_', '.' and '-'", type: 'must be a name (a string)' },
};

const TYPE_OF = { string: 'a string', integer: 'a number', boolean: 'true or false' } as const;

function duration(defaultValue: string | null, nullable = false): Schema {
  const how = `a duration: milliseconds or a string like 500ms, 5s, 2m, 24h${nullable ? ', or null' : ''}`;
  return {
    type: nullable ? ['integer', 'string', 'null'] : ['integer', 'string'],
    format: 'duration',
    minimum: 0,
    maximum: MAX_DURATION_MS,
    ...(defaultValue !== null || nullable ? { default: defaultValue } : {}),
    'x-messages': {
      type: `must be ${how}`,
      maximum: `is too long: at most 24 days (${MAX_DURATION_MS} ms)`,
      minimum: 'must not be negative',
    },
  };
}

/** One value or a non-empty list of them (`protocol: http` or `protocol: [http, tls]`). */
function oneOrMany(item: Schema & { type: 'string' | 'integer'; enum?: readonly string[] }): Schema {
  const { type, enum: allowed, 'x-messages': messages, ...rest } = item as Schema & {
    type: 'string' | 'integer';
    enum?: readonly string[];
    'x-messages'?: Schema;
  };
  return {
    ...rest,
    type: [type, 'array'],
    minItems: 1,
    items: item,
    // enum applies to every type, so it must only be checked on the single-value side.
    ...(allowed ? { if: { type }, then: { enum: allowed } } : {}),
    'x-messages': { ...messages, type: `must be ${TYPE_OF[type]} or a list of them` },
  };
}

const REGEX: Schema = { type: 'string', format: 'regex' };

const CONDITION: Schema = {
  type: 'object',
  minProperties: 1,
  additionalProperties: false,
  'x-messages': {
    type: 'must be a condition, e.g. { protocol: http }',
    minProperties: 'an empty condition: use protocol, sni, alpn, tls, host, method, path, header, websocket, src, port, all, any or not',
  },
  properties: {
    protocol: oneOrMany({ type: 'string', enum: ROUTE_PROTOCOLS }),
    sni: oneOrMany({ type: 'string', format: 'host-glob' }),
    alpn: oneOrMany({ type: 'string', minLength: 1, maxLength: 255 }),
    tls: { type: 'boolean' },
    host: oneOrMany({ type: 'string', format: 'host-header-glob' }),
    method: oneOrMany({
      type: 'string',
      pattern: '^[A-Za-z0-9*?_.!#$%&\'+^`|~-]+$',
      'x-messages': { pattern: 'must be an HTTP method or a glob of one, e.g. GET or P*' },
    }),
    path: {
      type: 'object',
      minProperties: 1,
      maxProperties: 1,
      additionalProperties: false,
      properties: { prefix: { type: 'string', minLength: 1 }, regex: REGEX },
      'x-messages': {
        minProperties: 'must have one of: prefix, regex',
        maxProperties: 'must have only one of: prefix, regex',
        type: 'must be { prefix: ... } or { regex: ... }',
      },
    },
    header: {
      type: 'object',
      required: ['name', 'regex'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", 'x-messages': { pattern: 'must be a header field name' } },
        regex: REGEX,
      },
    },
    websocket: { type: 'boolean' },
    src: oneOrMany({ type: 'string', format: 'cidr' }),
    port: oneOrMany({
      type: 'integer',
      minimum: 1,
      maximum: 65535,
      'x-messages': { minimum: PORT_PROBLEM, maximum: PORT_PROBLEM },
    }),
    all: { type: 'array', minItems: 1, items: { $ref: '#/$defs/condition' } },
    any: { type: 'array', minItems: 1, items: { $ref: '#/$defs/condition' } },
    not: { $ref: '#/$defs/condition' },
  },
};

const RULE: Schema = {
  type: 'object',
  required: ['if', 'use'],
  additionalProperties: false,
  properties: {
    if: { $ref: '#/$defs/condition' },
    use: NAME,
    passthrough: { type: 'boolean', default: false },
  },
};

const LISTEN: Schema = {
  // "0.0.0.0:80" or { address: "0.0.0.0:80", proxyProtocol: true }
  type: ['string', 'object'],
  format: 'listen-address',
  required: ['address'],
  additionalProperties: false,
  properties: {
    address: { type: 'string', format: 'listen-address' },
    proxyProtocol: { type: 'boolean', default: false },
    // With proxyProtocol: the only peers whose PROXY header is believed; others are refused.
    trustedProxies: { type: 'array', minItems: 1, items: { type: 'string', format: 'cidr' } },
  },
  'x-messages': { type: 'must be an address (host:port) or { address, proxyProtocol, trustedProxies }' },
};

const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

const FRONTEND_TLS: Schema = {
  type: 'object',
  required: ['certificates'],
  additionalProperties: false,
  properties: {
    certificates: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['cert', 'key'],
        additionalProperties: false,
        properties: { cert: { type: 'string', minLength: 1 }, key: { type: 'string', minLength: 1 } },
      },
    },
    minVersion: { type: 'string', enum: TLS_VERSIONS, default: 'TLSv1.2' },
    ciphers: { type: 'string', minLength: 1 },
    alpn: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 255 } },
  },
};

const FRONTEND: Schema = {
  type: 'object',
  required: ['name', 'listen'],
  additionalProperties: false,
  properties: {
    name: NAME,
    listen: {
      type: 'array',
      minItems: 1,
      items: LISTEN,
      'x-messages': { type: 'must be a list of addresses, e.g. [":8080"]', minItems: 'must list at least one address' },
    },
    maxconn: { type: 'integer', minimum: 0, default: 0 },
    inspect: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        delay: duration('500ms'),
        maxBytes: { type: 'integer', minimum: 64, maximum: 1048576, default: 16384 },
      },
    },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { client: duration('30s'), tunnel: duration('1h'), handshake: duration('10s'), httpRequest: duration('10s') },
    },
    flashPolicy: { type: 'boolean', default: false },
    tls: FRONTEND_TLS,
    rules: { type: 'array', items: RULE, default: [] },
    default: NAME,
  },
};

const SERVER: Schema = {
  type: 'object',
  required: ['name', 'address'],
  additionalProperties: false,
  properties: {
    name: NAME,
    address: { type: 'string', format: 'server-address' },
    maxconn: { type: 'integer', minimum: 0, default: 0 },
    weight: { type: 'integer', minimum: 0, maximum: 256, default: 1 },
    backup: { type: 'boolean', default: false },
  },
};

/** Re-encryption to a backend's servers; verification is on unless `verify: false`. */
const BACKEND_TLS: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    servername: { type: 'string', minLength: 1, maxLength: 255 },
    ca: { type: 'string', minLength: 1 },
    verify: { type: 'boolean', default: true },
    cert: { type: 'string', minLength: 1 },
    key: { type: 'string', minLength: 1 },
    minVersion: { type: 'string', enum: TLS_VERSIONS, default: 'TLSv1.2' },
  },
  dependencies: { cert: ['key'], key: ['cert'] },
};

/**
 * Active checks of each server (nginx's `check interval=3000 rise=2 fall=5
 * timeout=1000`, HAProxy's `check`). `path` and `expect` have no schema
 * default: they only make sense for `type: http`, and a default would make
 * them look written on a tcp check (normalize.ts fills them in).
 */
const HEALTH_CHECK: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['tcp', 'http'], default: 'tcp' },
    path: { type: 'string', pattern: '^/', 'x-messages': { pattern: "must be a request path starting with '/'" } },
    // 200, or a class: "2xx" (minimum/maximum apply to numbers, pattern to strings).
    expect: {
      type: ['integer', 'string'],
      minimum: 100,
      maximum: 599,
      pattern: '^[1-5]xx$',
      'x-messages': {
        type: 'must be an HTTP status (e.g. 200) or a class of them (e.g. "2xx")',
        minimum: 'must be an HTTP status, 100-599',
        maximum: 'must be an HTTP status, 100-599',
        pattern: 'must be an HTTP status (e.g. 200) or a class of them (e.g. "2xx")',
      },
    },
    interval: duration('2s'),
    rise: { type: 'integer', minimum: 1, maximum: 100, default: 2 },
    fall: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
    timeout: duration('1s'),
  },
  if: { properties: { type: { const: 'tcp' } } },
  then: {
    properties: {
      path: { not: true, 'x-messages': { not: 'is only used by type: http' } },
      expect: { not: true, 'x-messages': { not: 'is only used by type: http' } },
    },
  },
};

/** The admin listener: /status, /status.json, /metrics, /healthz. */
const ADMIN: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    // Beyond loopback it needs auth (semantic.ts refuses it otherwise): anyone who reaches it reads every backend.
    listen: { type: 'string', format: 'listen-address', default: '127.0.0.1:9000' },
    auth: {
      type: 'object',
      required: ['user', 'password'],
      additionalProperties: false,
      properties: {
        // Basic auth joins them as user:password, so the user name cannot hold a colon.
        user: { type: 'string', minLength: 1, pattern: '^[^:]*$', 'x-messages': { pattern: "must not contain ':'" } },
        password: { type: 'string', minLength: 1 },
      },
    },
  },
};

/**
 * `mode: http` only: headers added to each request, a path rewrite and cookie
 * stickiness (HAProxy `option forwardfor`, nginx `rewrite`, `cookie insert`).
 */
const BACKEND_HTTP: Schema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    forwardedFor: { type: 'boolean', default: false },
    // The peers (proxies in front) whose forwarding fields are believed; any other peer's are replaced.
    trustForwarded: { type: 'array', items: { type: 'string', format: 'cidr' }, default: [] },
    rewrite: {
      type: 'object',
      required: ['pattern', 'to'],
      additionalProperties: false,
      properties: { pattern: REGEX, to: { type: 'string' } },
      'x-messages': { type: 'must be { pattern, to }, e.g. { pattern: "^/api/(.*)", to: "/$1" }' },
    },
    stickyCookie: {
      type: 'string',
      pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
      'x-messages': { pattern: 'must be a cookie name (letters, digits and !#$%&\'*+-.^_`|~)' },
    },
  },
};

const BACKEND: Schema = {
  type: 'object',
  required: ['name', 'servers'],
  additionalProperties: false,
  properties: {
    name: NAME,
    mode: { type: 'string', enum: ['tcp', 'http'], default: 'tcp' },
    balance: { type: 'string', enum: ['roundrobin', 'leastconn', 'source', 'first'], default: 'roundrobin' },
    retries: { type: 'integer', minimum: 0, maximum: 10, default: 2 },
    // HAProxy's word, but its 0 ("unlimited") is refused: the bound is what keeps a flood of queued connections finite.
    maxqueue: {
      type: 'integer',
      minimum: 1,
      default: 10000,
      'x-messages': { minimum: 'must be at least 1 (there is no unlimited queue)' },
    },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        connect: duration('5s'),
        server: duration('30s'),
        tunnel: duration(null, true), // null: the frontend's tunnel timeout
        queue: duration('10s'),
      },
    },
    proxyProtocol: { type: 'string', enum: ['v1', 'v2'] },
    tls: BACKEND_TLS,
    healthCheck: HEALTH_CHECK,
    http: BACKEND_HTTP,
    servers: { type: 'array', minItems: 1, items: SERVER },
  },
};

const FLASH_POLICY: Schema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  // (the properties here only satisfy ajv's strictRequired)
  not: { required: ['allow', 'file'], properties: { allow: true, file: true } },
  'x-messages': { minProperties: 'must have allow or file', not: 'must have either allow or file, not both' },
  properties: {
    allow: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['domain'],
        additionalProperties: false,
        properties: {
          domain: { type: 'string', format: 'host-glob' },
          ports: { type: 'string', format: 'policy-ports', default: '*' },
        },
      },
    },
    file: { type: 'string', minLength: 1 },
  },
};

export const configSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/sniffmux/sniffmux/config.schema.json',
  title: 'sniffmux configuration',
  type: 'object',
  required: ['frontends'],
  additionalProperties: false,
  'x-messages': { type: 'must be a mapping with frontends and backends' },
  properties: {
    // Lets editors find this schema; ignored by sniffmux.
    $schema: { type: 'string' },
    global: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxconn: { type: 'integer', minimum: 0, default: 0 },
        workers: {
          type: ['integer', 'string'],
          minimum: 1,
          maximum: 1024,
          if: { type: 'string' },
          then: { const: 'auto', 'x-messages': { const: 'must be a number of processes or "auto"' } },
          default: 1,
          'x-messages': { type: 'must be a number of processes or "auto"' },
        },
        // Who spreads new connections over the workers: the cluster primary, in turn (even), or the kernel (cheaper per connection).
        workerBalance: { type: 'string', enum: ['primary', 'kernel'], default: 'primary' },
        grace: duration('10s'),
        // How routed tcp-mode connections are spliced: the native splice(2) loop when built (auto), required, or JavaScript streams.
        splice: { type: 'string', enum: ['auto', 'native', 'js'], default: 'auto' },
        sniffBudget: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            total: { type: 'integer', minimum: 1, default: 10000 },
            perSource: { type: 'integer', minimum: 1, default: 1000 },
          },
        },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
    admin: ADMIN,
    flashPolicy: FLASH_POLICY,
    frontends: { type: 'array', minItems: 1, items: FRONTEND },
    backends: { type: 'array', items: BACKEND, default: [] },
  },
  $defs: { condition: CONDITION },
} as const;

// ---- the validated document (defaults filled in, values still as written) ----

export type RawDuration = number | string;

export interface RawCondition {
  readonly [key: string]: unknown;
}

export interface RawDocument {
  global: {
    maxconn: number;
    workers: number | 'auto';
    workerBalance: 'primary' | 'kernel';
    grace: RawDuration;
    splice: 'auto' | 'native' | 'js';
    sniffBudget: { total: number; perSource: number };
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** `listen` defaults to 127.0.0.1:9000. */
  admin?: { listen: string; auth?: { user: string; password: string } };
  flashPolicy?: { allow?: { domain: string; ports: string }[]; file?: string };
  frontends: RawFrontend[];
  backends: RawBackend[];
}

export interface RawFrontend {
  name: string;
  listen: (string | { address: string; proxyProtocol: boolean; trustedProxies?: string[] })[];
  maxconn: number;
  inspect: { delay: RawDuration; maxBytes: number };
  timeouts: { client: RawDuration; tunnel: RawDuration; handshake: RawDuration; httpRequest: RawDuration };
  flashPolicy: boolean;
  tls?: {
    certificates: { cert: string; key: string }[];
    minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
    ciphers?: string;
    alpn?: string[];
  };
  rules: { if: RawCondition; use: string; passthrough: boolean }[];
  default?: string;
}

export interface RawBackend {
  name: string;
  mode: 'tcp' | 'http';
  balance: 'roundrobin' | 'leastconn' | 'source' | 'first';
  retries: number;
  maxqueue: number;
  timeouts: { connect: RawDuration; server: RawDuration; tunnel: RawDuration | null; queue: RawDuration };
  proxyProtocol?: 'v1' | 'v2';
  tls?: {
    servername?: string;
    ca?: string;
    verify: boolean;
    cert?: string;
    key?: string;
    minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  };
  healthCheck?: RawHealthCheck;
  http: { forwardedFor: boolean; trustForwarded: string[]; rewrite?: { pattern: string; to: string }; stickyCookie?: string };
  servers: { name: string; address: string; maxconn: number; weight: number; backup: boolean }[];
}

export interface RawHealthCheck {
  type: 'tcp' | 'http';
  path?: string;
  expect?: number | string;
  interval: RawDuration;
  rise: number;
  fall: number;
  timeout: RawDuration;
}
