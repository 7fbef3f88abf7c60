import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';

/**
 * External peers (openssl, curl, chromium). A test that needs one the machine
 * lacks says so loudly: in CI (CI=true) it fails, since .ci/run installs them;
 * elsewhere it is skipped with the reason.
 */
export function haveTool(t: { fail(msg: string): boolean; pass(msg: string): boolean }, tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    const message = `${tool} is not installed: this test needs it (.ci/run installs it)`;
    if (process.env.CI) {
      t.fail(message);
    } else {
      process.stderr.write(`\n*** WARNING: ${message}; skipping it here ***\n`);
      t.pass(`skipped: ${message}`);
    }
    return false;
  }
}

export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command without blocking the event loop (sniffmux runs in this
 * process). With `timeoutMs`, one still running then is killed (SIGTERM; code null).
 */
export function runTool(command: string, args: string[], input = '', timeoutMs?: number): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
