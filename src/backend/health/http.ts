import http from 'node:http';
import type { Address, HealthCheck } from '../../config/types.js';
import type { Probe, ProbeOutcome } from './checker.js';
import { outOfDescriptors, reportDescriptorShortage } from '../connect.js';

/**
 * An http check: `GET path` on a fresh connection (no agent, so a dead
 * kept-alive socket cannot make a live server look down); it passes when the
 * status is in `expect`. The body is not read.
 */
export function httpProbe(address: Address, check: Pick<HealthCheck, 'path' | 'expect'>): Probe {
  const { min, max, text } = check.expect;
  return (signal) =>
    new Promise<ProbeOutcome>((resolve) => {
      let settled = false;
      const finish = (outcome: ProbeOutcome): void => {
        if (settled) return;
        settled = true;
        request.destroy();
        resolve(outcome);
      };
      const request = http.request(
        {
          host: address.host,
          port: address.port,
          path: check.path,
          method: 'GET',
          agent: false,
          signal,
          headers: { host: address.text, 'user-agent': 'sniffmux-health-check', connection: 'close' },
        },
        (response) => {
          const status = response.statusCode ?? 0;
          response.destroy();
          const ok = status >= min && status <= max;
          finish({ ok, detail: ok ? `HTTP ${status}` : `HTTP ${status} (expected ${text})` });
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (outOfDescriptors(error)) reportDescriptorShortage(error, address.text);
        finish({ ok: false, detail: signal.aborted ? 'aborted' : `request failed: ${error.code ?? error.message}`, skipped: outOfDescriptors(error) });
      });
      request.end();
    });
}
