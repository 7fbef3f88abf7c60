/**
 * The peers sniffmux is compared with, each configured for the seed recipe's
 * job (sniff HTTP vs everything else on one port, splice to the backend) in
 * one process / one thread, logging off, on loopback ports chosen at run
 * time. Every backend of the recipe points at the one bench backend.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, spawnDaemon, waitForPort } from '../src/bench/process.js';
import type { Target } from '../src/bench/targets.js';

function firstLine(command: string, args: string[]): string | null {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error) return null;
  return `${r.stdout}\n${r.stderr}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? null;
}

/** Installs the peers from Debian when one is missing (root, apt-get). */
export function ensurePeersInstalled(log: (line: string) => void): void {
  const missing: string[] = [];
  if (!existsSync('/usr/sbin/haproxy')) missing.push('haproxy');
  if (!existsSync('/usr/sbin/nginx')) missing.push('nginx');
  if (!existsSync('/usr/lib/nginx/modules/ngx_stream_module.so')) missing.push('libnginx-mod-stream');
  if (!existsSync('/usr/sbin/sslh-select')) missing.push('sslh');
  if (missing.length === 0) return;
  log(`installing ${missing.join(' ')} (apt-get)…`);
  try {
    execFileSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    execFileSync('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
}

/** A target that runs `command args(config)` in a temporary folder and waits for its port. */
function daemonTarget(spec: {
  name: string;
  label: string;
  version: string | null;
  skips?: Record<string, string>;
  files: (port: number, backendPort: number, dir: string) => Record<string, string>;
  command: string;
  args: (dir: string) => string[];
}): Target {
  return {
    name: spec.name,
    label: spec.label,
    ...(spec.version ? { version: spec.version } : {}),
    ...(spec.skips ? { skips: spec.skips } : {}),
    async start(backendPort) {
      const dir = mkdtempSync(path.join(os.tmpdir(), `bench-${spec.name}-`));
      const port = await freePort();
      for (const [file, text] of Object.entries(spec.files(port, backendPort, dir))) writeFileSync(path.join(dir, file), text);
      const daemon = spawnDaemon(spec.command, spec.args(dir), { cwd: dir });
      try {
        await waitForPort(port, 10_000, daemon.alive);
      } catch (error) {
        await daemon.stop();
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`${spec.label} did not start: ${(error as Error).message}\n${daemon.output()}`);
      }
      return {
        port,
        pid: daemon.pid,
        async stop() {
          await daemon.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/** HAProxy, `mode tcp`, the seed frontend: inspect-delay, accept if HTTP, path_beg ACLs, !HTTP to sio_tcp. One thread. */
export function haproxy(): Target {
  return daemonTarget({
    name: 'haproxy',
    label: 'HAProxy',
    version: firstLine('haproxy', ['-v']),
    files: (port, backendPort) => ({
      'haproxy.cfg': `global
    maxconn 9800
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 24h
    timeout server 24h
frontend app
    bind 127.0.0.1:${port}
    maxconn 9800
    tcp-request inspect-delay 500ms
    tcp-request content accept if HTTP
    acl is_socket_io path_beg /node
    acl is_socket_io path_beg /socket.io
    use_backend socket_io if is_socket_io
    use_backend sio_tcp if !HTTP
    default_backend webapp
backend socket_io
    server node1 127.0.0.1:${backendPort} maxconn 2000
backend sio_tcp
    server node1 127.0.0.1:${backendPort}
backend webapp
    server web1 127.0.0.1:${backendPort}
`,
    }),
    command: 'haproxy',
    args: (dir) => ['-db', '-f', path.join(dir, 'haproxy.cfg')],
  });
}

/** nginx stream with ssl_preread (TLS vs the rest, by the preread protocol), one worker, no master. */
export function nginx(): Target {
  return daemonTarget({
    name: 'nginx',
    label: 'nginx stream',
    version: firstLine('nginx', ['-v']),
    files: (port, backendPort, dir) => ({
      'nginx.conf': `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events {
    worker_connections 19500;
}
stream {
    map $ssl_preread_protocol $upstream {
        ""      plain;
        default tls;
    }
    upstream plain { server 127.0.0.1:${backendPort}; }
    upstream tls   { server 127.0.0.1:${backendPort}; }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        ssl_preread on;
        preread_timeout 500ms;
        proxy_pass $upstream;
        proxy_connect_timeout 5s;
        proxy_timeout 24h;
    }
}
`,
    }),
    command: 'nginx',
    args: (dir) => ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')],
  });
}

/**
 * sslh-select: HTTP, TLS, anything else (anyprot), all to the backend; one
 * process. It uses select(), so at most FD_SETSIZE = 1024 descriptors.
 */
export function sslh(): Target {
  return {
    name: 'sslh',
    label: 'sslh-select',
    ...(() => {
      const v = firstLine('sslh-select', ['-V']);
      return v ? { version: v } : {};
    })(),
    skips: { memory: 'sslh-select uses select(): at most 1024 descriptors, it cannot hold thousands of connections' },
    async start(backendPort) {
      const port = await freePort();
      const b = `127.0.0.1:${backendPort}`;
      const daemon = spawnDaemon('sslh-select', ['-f', '-n', '-t', '1', '-p', `127.0.0.1:${port}`, '--http', b, '--tls', b, '--anyprot', b]);
      try {
        await waitForPort(port, 10_000, daemon.alive);
      } catch (error) {
        await daemon.stop();
        throw new Error(`sslh-select did not start: ${(error as Error).message}\n${daemon.output()}`);
      }
      return { port, pid: daemon.pid, stop: () => daemon.stop() };
    },
  };
}

/** The naive Node proxy of the issue: read the first chunk, connect, write it, pipe() both ways. */
export function naiveNode(): Target {
  const script = fileURLToPath(new URL('./naive-proxy.mjs', import.meta.url));
  return {
    name: 'naive',
    label: 'naive Node proxy',
    version: `node ${process.version}, bench/naive-proxy.mjs`,
    async start(backendPort) {
      const port = await freePort();
      const daemon = spawnDaemon(process.execPath, [script, String(port), String(backendPort)]);
      try {
        await waitForPort(port, 10_000, daemon.alive);
      } catch (error) {
        await daemon.stop();
        throw new Error(`naive proxy did not start: ${(error as Error).message}\n${daemon.output()}`);
      }
      return { port, pid: daemon.pid, stop: () => daemon.stop() };
    },
  };
}
