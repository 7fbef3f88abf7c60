/**
 * Polls `check` until it holds, for a state no event announces (a count in
 * another process, descriptors closed by a native thread); fails with `what`
 * after `timeoutMs`.
 */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
