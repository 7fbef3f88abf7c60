import { SniffmuxError } from '../errors.js';
import { runBench } from './bench.js';
import { runCert } from './cert.js';
import { runCheck } from './check.js';
import { runDemo } from './demo.js';
import { runExplain } from './explain.js';
import { runServe } from './run.js';

export const USAGE = `sniffmux — one port, many protocols

usage:
  sniffmux run -c FILE                 run with a YAML or JSON config (also: sniffmux -c FILE)
  sniffmux check -c FILE               validate a config: "config OK" or one line per problem
  sniffmux demo [--port 8080] [--policy-port 8843]
                                       the embedded default with built-in demo backends
  sniffmux cert --cn NAME [--san NAME...] --out DIR
                                       write a self-signed certificate and key
  sniffmux explain -c FILE [--frontend NAME] [--hex HEX | --file CAPTURE] [--src IP]
                                       what the sniffer makes of some first bytes, and where they would go
  sniffmux bench [--scenario NAME...] [--duration 5s] [--connections 50] [--json FILE]
                                       sniffmux vs a direct connection on loopback: throughput,
                                       connections/s, latency p50/p99, memory per connection
`;

type Command = (argv: string[]) => Promise<number | undefined>;

const COMMANDS: Record<string, Command> = {
  run: runServe,
  check: runCheck,
  demo: runDemo,
  cert: runCert,
  explain: runExplain,
  bench: runBench,
};

/** Dispatches a command line; returns the exit code (undefined = keep running). The only place that prints start-up errors. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    process.stdout.write(USAGE);
    return first === undefined ? 1 : 0;
  }
  const command = first.startsWith('-') ? runServe : COMMANDS[first];
  if (!command) {
    process.stderr.write(`sniffmux: unknown command '${first}'\n${USAGE}`);
    return 1;
  }
  try {
    return await command(first.startsWith('-') ? argv : rest);
  } catch (error) {
    if (error instanceof SniffmuxError) {
      for (const line of error.problems) process.stderr.write(`sniffmux: ${line}\n`);
      return 1;
    }
    throw error;
  }
}
