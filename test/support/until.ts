import assert from 'node:assert/strict';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What is awaited, named for the failure message; a function is asked only then (e.g. to add a process's latest output). */
export type Described = string | (() => string);

const named = (what: Described): string => (typeof what === 'string' ? what : what());

/** Polls `check` until it holds; fails the test naming `what` after `timeoutMs`. A `check` that throws ends the wait with its error. */
export async function until(what: Described, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, pollMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${named(what)}`);
    await sleep(pollMs);
  }
}

/** Polls `probe` until it gives a value, and returns it; fails the test naming `what` after `timeoutMs`. */
export async function untilValue<T>(what: Described, probe: () => Promise<T | undefined>, timeoutMs = 20_000, pollMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${named(what)}`);
    await sleep(pollMs);
  }
}
