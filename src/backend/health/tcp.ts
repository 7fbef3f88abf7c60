import net from 'node:net';
import type { Address } from '../../config/types.js';
import type { Probe, ProbeOutcome } from './checker.js';
import { outOfDescriptors, reportDescriptorShortage } from '../connect.js';

/** A tcp check passes when the server accepts a connection; it is closed at once, nothing is sent. */
export function tcpProbe(address: Address): Probe {
  return (signal) =>
    new Promise<ProbeOutcome>((resolve) => {
      const socket = net.connect({ host: address.host, port: address.port });
      const finish = (outcome: ProbeOutcome): void => {
        signal.removeEventListener('abort', onAbort);
        socket.destroy();
        resolve(outcome);
      };
      const onAbort = (): void => finish({ ok: false, detail: 'aborted' });
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => finish({ ok: true, detail: 'connected' }));
      socket.once('error', (error: NodeJS.ErrnoException) => {
        if (outOfDescriptors(error)) reportDescriptorShortage(error, address.text);
        finish({ ok: false, detail: `connect failed: ${error.code ?? error.message}`, skipped: outOfDescriptors(error) });
      });
    });
}
