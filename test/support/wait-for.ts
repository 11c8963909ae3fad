// Waiting for a condition with a deadline, which is what a test should do instead of
// asserting after a fixed sleep: a sleep is flaky on a busy machine and slow on an idle one.

export interface WaitForOptions {
  /** Give up (reject) after this long; default 5 s. */
  timeoutMs?: number;
  /** Poll this often; default 10 ms. */
  everyMs?: number;
  /** What is awaited, for the error message; a function is called at the deadline (e.g. to show the last value seen). */
  what?: string | (() => string);
}

/** Polls `condition` until it returns something other than undefined or false, and returns that. */
export async function waitFor<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitForOptions = {},
): Promise<T> {
  const { timeoutMs = 5_000, everyMs = 10, what = 'the condition' } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Whether `promise` has settled yet, read at any moment (a wait a test expects still to be going). */
export function settled(promise: Promise<unknown>): () => boolean {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  return () => done;
}
