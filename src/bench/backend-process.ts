/**
 * Entry point of the bench backend child process (forked by
 * process.ts:startBackendProcess). Reports its port over IPC, exits when the
 * parent disconnects.
 */
import { startBenchBackend } from './backends.js';

const backend = await startBenchBackend();
process.send?.({ port: backend.port });
process.on('disconnect', () => {
  void backend.close().finally(() => process.exit(0));
});
