import type { status, StatusObject } from '@grpc/grpc-js';
import type { ProxyError } from '../etcd/errors';
import type { Logger } from '../log';
import type { Source } from '../metrics';
import type { ProxyMode } from '../settings/types';
import type { LeaderSentinel } from '../upstream/leader-sentinel';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamPool } from '../upstream/pool';

export interface KeepAliveMetrics {
  /** Downstream keep-alive streams open: +1 when one is taken, -1 when it ends. */
  readonly streamsOpen: (delta: number) => void;
  /** A downstream stream ended (or was refused) with `code`, given by `source`. */
  readonly called: (code: status, source: Source) => void;
  /** A renewal answered by one already under way for its lease. */
  readonly coalesced: () => void;
  /** Upstream keep-alive streams opened (+1) and ended (-1). */
  readonly upstreamStreams: (delta: number) => void;
}

/** What lease keep-alive sharing is built from, passed in by whoever serves LeaseKeepAlive. */
export interface SharedKeepAliveDeps {
  readonly pool: UpstreamPool;
  /** Tells when etcd ends its require-leader streams: downstream ones served here end then too. */
  readonly leader: LeaderSentinel;
  /** The upstream's liveness: 'silent' (no member answers at all) ends every stream. Null: not followed. */
  readonly liveness: Liveness | null;
  /** readwrite or readonly; asked per request, since a reload may change it. */
  readonly mode: () => ProxyMode;
  /** The error a write gets instead of being forwarded (read-only, upstream lost), or null: a renewal is a write. */
  readonly admitWrite: () => ProxyError | null;
  /** Registers an open stream so a graceful stop can end it with a status; the returned function unregisters it. */
  readonly track: (close: (result: StatusObject) => void) => () => void;
  readonly log: Logger;
  readonly metrics: KeepAliveMetrics;
}
