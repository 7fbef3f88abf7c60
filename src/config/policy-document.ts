/**
 * The Flash socket policy document served to `<policy-file-request/>\0`:
 * built from `flashPolicy.allow`, or read verbatim from `flashPolicy.file`.
 * The trailing NUL is the server's job, which is why a file may not hold one.
 */
import { readFileSync } from 'node:fs';
import { parsePort } from './address.js';
import { describeFsError } from './files.js';

export interface PolicyAllow {
  readonly domain: string;
  readonly ports: string;
}

/** Used when the config has no flashPolicy section: anyone, any port (Flash's own permissive example). */
export const DEFAULT_POLICY_ALLOW: readonly PolicyAllow[] = [{ domain: '*', ports: '*' }];

/** `to-ports` is `*` or a comma-separated list of ports and ranges, e.g. `80,443,8000-8100`. */
export function portsProblem(text: string): string | null {
  if (text === '*') return null;
  const how = `invalid ports '${text}': use * or ports and ranges like 80,443,8000-8100`;
  for (const part of text.split(',')) {
    const range = /^(\d+)-(\d+)$/.exec(part);
    if (range) {
      const lo = parsePort(range[1]!);
      const hi = parsePort(range[2]!);
      if (lo === null || hi === null) return `invalid ports '${text}': port must be 1-65535`;
      if (lo > hi) return `invalid ports '${text}': range ${part} is backwards`;
    } else if (/^\d+$/.test(part)) {
      if (parsePort(part) === null) return `invalid ports '${text}': port must be 1-65535`;
    } else {
      return how;
    }
  }
  return null;
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

function escapeAttribute(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

export function buildPolicyDocument(allow: readonly PolicyAllow[]): string {
  const lines = [
    '<?xml version="1.0"?>',
    '<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">',
    '<cross-domain-policy>',
    '<site-control permitted-cross-domain-policies="master-only"/>',
    ...allow.map((a) => `<allow-access-from domain="${escapeAttribute(a.domain)}" to-ports="${escapeAttribute(a.ports)}"/>`),
    '</cross-domain-policy>',
  ];
  return lines.join('\n');
}

/** The policy file's text, or a message saying what is wrong with it. */
export function readPolicyFile(path: string): string | { problem: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { problem: `cannot read ${path}: ${describeFsError(err)}` };
  }
  if (text.includes('\0')) return { problem: `${path} contains a NUL byte (the policy is sent NUL-terminated)` };
  if (text.trim() === '') return { problem: `${path} is empty` };
  return text;
}
