import type { StatusObject } from '@grpc/grpc-js';

/** Ends one open stream with the given status, releasing what it holds upstream. */
export type StreamCloser = (status: StatusObject) => void;

/**
 * The set of open long-lived calls (watches, keep-alives, snapshots). A
 * graceful stop ends each with a status a client can act on (UNAVAILABLE:
 * reconnect), instead of letting the connection drop under it.
 */
export interface StreamTracker {
  /** Registers a stream; the returned function unregisters it when it ends on its own. */
  add(closer: StreamCloser): () => void;
  readonly size: number;
  closeAll(status: StatusObject): void;
}

export function createStreamTracker(): StreamTracker {
  const open = new Set<StreamCloser>();
  return {
    add(closer) {
      open.add(closer);
      return () => open.delete(closer);
    },
    get size() {
      return open.size;
    },
    closeAll(status) {
      for (const closer of [...open]) {
        open.delete(closer);
        closer(status);
      }
    },
  };
}
