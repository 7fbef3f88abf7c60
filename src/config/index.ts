/**
 * The config module's whole API: load or check a file, parse an in-memory
 * document (the embedded demo config), and the JSON Schema itself.
 *
 * The pipeline: copy to plain data → schema (ajv, defaults) → normalise →
 * semantic checks, referenced files, the policy document → deep freeze. Every
 * problem found along the way is one `PATH: message` line; a config is either
 * entirely valid or not returned at all.
 */
import { dirname, resolve } from 'node:path';
import { SniffmuxError } from '../errors.js';
import type { Config } from './types.js';
import type { RawDocument } from './schema.js';
import { copyPlainData } from './plain-data.js';
import { validateDocument } from './validate.js';
import { normalize } from './normalize.js';
import { checkSemantics } from './semantic.js';
import { readCaBundle, readCertificatePair, isCertificateProblem } from '../tls/certs.js';
import { cipherStringProblem } from '../tls/ciphers.js';
import { resolveConfigPath } from './files.js';
import { buildPolicyDocument, DEFAULT_POLICY_ALLOW, readPolicyFile } from './policy-document.js';
import { printable, sortProblems, type Problem } from './path.js';
import { parseConfigText, readConfigText } from './load.js';
import { deepFreeze } from './freeze.js';

export type * from './types.js';
export { configSchema } from './schema.js';
export { parseDuration, MAX_DURATION_MS } from './duration.js';
export { parseAddress, PORT_PROBLEM } from './address.js';

export interface ParseOptions {
  /** Folder that relative paths (certificates, policy file) are resolved against. */
  readonly baseDir: string;
  /** Absolute path of the file the document came from, or null for an embedded config. */
  readonly source: string | null;
  /**
   * Accept listen port 0, "any free port", which the demo and tests use and
   * then read the bound port back. Default true here (documents built in
   * code); loadConfigFile passes false: a config file must name real ports.
   */
  readonly listenPortZero?: boolean;
}

function invalid(found: readonly string[], source: string | null): SniffmuxError {
  const problems = found.map(printable);
  const where = source === null ? 'configuration' : source;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  return new SniffmuxError('SMX_ERR_CONFIG', `invalid ${where}: ${problems[0]}${more}`, problems);
}

function policyDocument(doc: RawDocument, baseDir: string): string | Problem {
  const section = doc.flashPolicy;
  if (section?.file !== undefined) {
    const text = readPolicyFile(resolveConfigPath(baseDir, section.file));
    return typeof text === 'string' ? text : { path: ['flashPolicy', 'file'], message: text.problem };
  }
  return buildPolicyDocument(section?.allow ?? DEFAULT_POLICY_ALLOW);
}

/**
 * Certificates are checked as the TLS code will use them: readable, parsable,
 * the key matching its certificate, not expired. Each problem names the file.
 * A frontend's own cipher string is tried too.
 */
function tlsProblems(config: Config): Problem[] {
  const out: Problem[] = [];
  config.frontends.forEach((f, fi) => {
    f.tls?.certificates.forEach((c, ci) => {
      const pair = readCertificatePair(c.cert, c.key);
      if (isCertificateProblem(pair)) out.push({ path: ['frontends', fi, 'tls', 'certificates', ci, pair.which], message: pair.message });
    });
    const ciphers = f.tls?.ciphers ? cipherStringProblem(f.tls.ciphers, f.tls.minVersion) : null;
    if (ciphers) out.push({ path: ['frontends', fi, 'tls', 'ciphers'], message: ciphers });
  });
  config.backends.forEach((b, bi) => {
    if (!b.tls) return;
    if (b.tls.ca !== null) {
      const ca = readCaBundle(b.tls.ca);
      if (typeof ca !== 'string') out.push({ path: ['backends', bi, 'tls', 'ca'], message: ca.message });
    }
    if (b.tls.cert !== null && b.tls.key !== null) {
      const pair = readCertificatePair(b.tls.cert, b.tls.key);
      if (isCertificateProblem(pair)) out.push({ path: ['backends', bi, 'tls', pair.which], message: pair.message });
    }
  });
  return out;
}

/**
 * Validate and normalise a document already in memory. Throws SniffmuxError
 * SMX_ERR_CONFIG with one `problems` line per problem.
 */
export function parseConfig(raw: unknown, opts: ParseOptions): Config {
  if (raw === null || raw === undefined) throw invalid(['(root): the configuration is empty'], opts.source);
  const copied = copyPlainData(raw);
  if (copied.problems.length > 0) throw invalid(sortProblems(copied.problems, copied.value), opts.source);
  const data = copied.value;
  const validated = validateDocument(data);
  if (!validated.ok) throw invalid(sortProblems(validated.problems, data), opts.source);
  const doc = validated.value;
  const policy = policyDocument(doc, opts.baseDir);
  const config = normalize(doc, {
    source: opts.source,
    baseDir: opts.baseDir,
    flashPolicy: typeof policy === 'string' ? policy : '',
  });
  const problems = [...checkSemantics(config, { listenPortZero: opts.listenPortZero ?? true }), ...tlsProblems(config)];
  if (typeof policy !== 'string') problems.push(policy);
  if (problems.length > 0) throw invalid(sortProblems(problems, data), opts.source);
  return deepFreeze(config);
}

/**
 * Load a YAML or JSON config file. Throws SniffmuxError: SMX_ERR_CONFIG_READ
 * when the file cannot be read, SMX_ERR_CONFIG when it is not a valid config
 * (a syntax error is a single problem naming the file and line).
 */
export function loadConfigFile(path: string): Config {
  const read = readConfigText(path);
  if ('error' in read) throw new SniffmuxError('SMX_ERR_CONFIG_READ', read.error, [read.error]);
  return loadConfigText(read.text, path);
}

/**
 * The text of a config file, as if read from `path` (which names it in
 * syntax errors, picks YAML or JSON by its extension, and is where relative
 * paths start): parsed, then validated like parseConfig. Throws SniffmuxError
 * SMX_ERR_CONFIG.
 */
export function loadConfigText(text: string, path: string): Config {
  const source = resolve(path);
  const parsed = parseConfigText(text, path);
  if (!parsed.ok) throw invalid([parsed.problem], source);
  return parseConfig(parsed.value, { baseDir: dirname(source), source, listenPortZero: true });
}

/** `sniffmux check`: the same as loading, with problems returned instead of thrown. */
export function checkConfigFile(path: string): { ok: true; config: Config } | { ok: false; problems: string[] } {
  try {
    return { ok: true, config: loadConfigFile(path) };
  } catch (err) {
    if (err instanceof SniffmuxError && (err.code === 'SMX_ERR_CONFIG' || err.code === 'SMX_ERR_CONFIG_READ')) {
      return { ok: false, problems: [...err.problems] };
    }
    throw err;
  }
}
