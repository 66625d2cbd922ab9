/** While events wait for a range that has said nothing, its progress is asked this often. */
const HELD_PROGRESS_MS = 50;

export interface ProgressRequests {
  /** The stream said something: it need not be asked for a while. */
  heard(): void;
  stop(): void;
}

/**
 * Asks the mirror's watch stream for its progress. A quiet stream is asked
 * each `everyMs`: etcd answers on the stream (no RPC, a few bytes), which
 * tells the member is there and has a leader, so liveness need not probe it.
 * Events held for a range that said nothing yet (`hasHeld`) ask sooner.
 */
export function startProgressRequests(ask: () => void, everyMs: number, hasHeld: (() => boolean) | null): ProgressRequests {
  let heardAt = Date.now();
  const quiet = setInterval(() => {
    if (Date.now() - heardAt >= everyMs / 2) ask();
  }, everyMs);
  quiet.unref();
  const held =
    hasHeld === null
      ? null
      : setInterval(() => {
          if (hasHeld()) ask();
        }, HELD_PROGRESS_MS);
  held?.unref();
  return {
    heard: () => {
      heardAt = Date.now();
    },
    stop: () => {
      clearInterval(quiet);
      if (held !== null) clearInterval(held);
    },
  };
}
