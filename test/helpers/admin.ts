import type { RunningMux } from './mux.js';

export interface AdminReply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

/** GET (or another method) on the mux's admin listener. */
export async function adminRequest(mux: RunningMux, path: string, init: RequestInit = {}): Promise<AdminReply> {
  const address = mux.instance.adminAddress();
  if (address === null) throw new Error('this mux has no admin listener');
  const response = await fetch(`http://127.0.0.1:${address.port}${path}`, { redirect: 'manual', ...init });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** /status.json, parsed. */
export async function statusJson(mux: RunningMux): Promise<any> {
  const reply = await adminRequest(mux, '/status.json');
  if (reply.status !== 200) throw new Error(`/status.json answered ${reply.status}: ${reply.body}`);
  return JSON.parse(reply.body);
}

/** The value of one sample in Prometheus text, e.g. metricValue(text, 'sniffmux_server_up{backend="b",server="s"}'). */
export function metricValue(text: string, sample: string): number | null {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return null;
}
