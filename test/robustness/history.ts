// What a robustness run records: every request a client made (through which proxy, or straight to etcd), with
// its start and end time and its answer, every watch stream a client held, and etcd's own history (every
// event from revision 1, recorded by a watch made straight on etcd). The checker (checker/) reads only this.

/** A key-value as an answer carried it; keys and values are UTF-8 text (the traffic writes only text). */
export interface RecordedKv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: string;
}

export interface RangeRequest {
  readonly kind: 'range';
  readonly key: string;
  /** '' for one key; '\0' for every key from `key` on. */
  readonly rangeEnd: string;
  /** 0: the newest. */
  readonly revision: number;
  readonly serializable: boolean;
  readonly limit: number;
  readonly countOnly: boolean;
  readonly keysOnly: boolean;
}

export interface PutRequest {
  readonly kind: 'put';
  readonly key: string;
  readonly value: string;
  /** '0' for none (lease IDs are 64-bit: decimal text). */
  readonly lease: string;
}

export interface DeleteRequest {
  readonly kind: 'delete';
  readonly key: string;
  readonly rangeEnd: string;
}

/** Compare-and-swap as leaders do it: if `key`'s mod revision is `ifModRevision` (0: absent) then put, else read. */
export interface CasRequest {
  readonly kind: 'cas';
  readonly key: string;
  readonly ifModRevision: number;
  readonly value: string;
  readonly lease: string;
}

export interface CompactRequest {
  readonly kind: 'compact';
  readonly revision: number;
}

export type Request = RangeRequest | PutRequest | DeleteRequest | CasRequest | CompactRequest;

export interface Answer {
  readonly ok: true;
  /** header.revision */
  readonly revision: number;
  /** The answer carried x-etcd-cache-proxy-stale: true (served from the mirror while etcd was lost). */
  readonly stale: boolean;
  /** Range: the kvs; CAS: the kv read on failure. */
  readonly kvs?: readonly RecordedKv[];
  readonly count?: number;
  readonly more?: boolean;
  /** CAS: whether the compare held. */
  readonly succeeded?: boolean;
}

export interface Failure {
  readonly ok: false;
  /** gRPC status code. */
  readonly code: number;
  readonly message: string;
}

/** One request and what came of it. Times are milliseconds on one monotonic clock (performance.now()). */
export interface OperationRecord {
  readonly type: 'op';
  readonly id: number;
  readonly client: string;
  /** The proxy's name, or 'etcd' for a request made straight to a member. */
  readonly via: string;
  readonly request: Request;
  readonly start: number;
  readonly end: number;
  readonly result: Answer | Failure;
}

export interface RecordedEvent {
  readonly type: 'put' | 'delete';
  readonly kv: RecordedKv;
}

/** One watch response as a client received it. */
export interface WatchDelivery {
  readonly at: number;
  readonly revision: number;
  readonly events: readonly RecordedEvent[];
}

/** What ended one watch stream of a client (it may open another, from its last revision + 1). */
export interface WatchEnd {
  readonly at: number;
  /** 'compacted': etcd's answer with compact_revision; 'canceled': canceled by the server for another reason; 'error': the stream failed. */
  readonly reason: 'compacted' | 'canceled' | 'error' | 'closed';
  readonly compactRevision?: number;
  readonly message?: string;
}

/** One watch stream, from its create request to its end. */
export interface WatchRecord {
  readonly type: 'watch';
  readonly id: number;
  readonly client: string;
  /** The client's watch this stream is part of: it opens the next stream of a chain from its last revision + 1, a new chain after a compaction (from a new list). */
  readonly chain: string;
  readonly via: string;
  readonly key: string;
  readonly rangeEnd: string;
  readonly startRevision: number;
  readonly opened: number;
  readonly deliveries: readonly WatchDelivery[];
  readonly end: WatchEnd;
}

/** etcd's own history: every revision's events, in order, straight from a member. */
export interface EtcdRevision {
  readonly type: 'etcd';
  readonly revision: number;
  readonly events: readonly RecordedEvent[];
  /** When the history watch received it: no later than etcd made it plus the watch's delay. */
  readonly at?: number;
}

/** One keep-alive a lease holder sent, and etcd's (or the proxy's) answer: the TTL left, 0 for a lease etcd no longer has. */
export interface KeepAliveRecord {
  readonly sent: number;
  readonly answered: number;
  readonly ttl: number;
}

/** A lease a client granted through a proxy, put one key under, kept alive for a while, then let expire. */
export interface LeaseRecord {
  readonly type: 'lease';
  readonly id: number;
  readonly client: string;
  readonly via: string;
  /** etcd's lease ID, decimal. */
  readonly leaseId: string;
  readonly key: string;
  /** The TTL etcd granted, in seconds. */
  readonly ttl: number;
  /** When the grant was sent: the lease lives at least TTL from then. */
  readonly granted: number;
  readonly keepAlives: readonly KeepAliveRecord[];
  /** When the client stopped sending keep-alives (null: the run ended first). */
  readonly stopped: number | null;
  /**
   * The last keep-alive sent, answered or not: one the client gave up on
   * (through a paused proxy, say) may still reach etcd and renew the lease.
   */
  readonly lastSent?: number | null;
}

/** A fault as injected, for the report. */
export interface FaultRecord {
  readonly type: 'fault';
  readonly at: number;
  readonly name: string;
  readonly target: string;
  readonly until?: number;
}

/**
 * etcd restored from a snapshot during the run, as an operator restores a
 * cluster from a backup: its history went back to the snapshot's revision
 * and went on from there with other writes, so the same revisions mean two
 * things, one before the restore (an epoch) and one after.
 */
export interface RestoreRecord {
  readonly type: 'restore';
  /** When the members were stopped for the restore: what began before is the previous epoch's. */
  readonly at: number;
  /**
   * When every proxy had been seen serving the restored etcd (a marker key
   * written after the restore): what ended after is the new epoch's; what
   * overlaps [at, settled] may be either, and is checked against both.
   */
  readonly settled: number;
  /** The revision the snapshot holds: the restored etcd goes on from it. */
  readonly snapshotRevision: number;
  /** The highest revision compacted when the snapshot was taken (the restored etcd's compaction point). */
  readonly compactRevision: number;
  /** Whether the restore made a new cluster ID (a new cluster token) or kept the old one. */
  readonly newClusterId: boolean;
  /** The restored etcd's history past `snapshotRevision` (up to it, the previous epoch's). */
  readonly etcd: readonly EtcdRevision[];
}

export type HistoryRecord = OperationRecord | WatchRecord | EtcdRevision | FaultRecord | LeaseRecord | RestoreRecord;

/** Everything a run recorded, as the checker takes it. */
export interface History {
  readonly seed: number;
  readonly operations: readonly OperationRecord[];
  readonly watches: readonly WatchRecord[];
  /** etcd's revisions with their events, ascending; revisions with no entry were compactions or writes with no event. Up to the first restore, if any. */
  readonly etcd: readonly EtcdRevision[];
  /** Restores of etcd from a snapshot, in order: each begins an epoch of etcd's history. */
  readonly restores?: readonly RestoreRecord[];
  readonly faults: readonly FaultRecord[];
  readonly leases?: readonly LeaseRecord[];
  /** A user's readable ranges, by client, for the auth check (clients absent here read as root). */
  readonly readable?: Readonly<Record<string, readonly { readonly key: string; readonly rangeEnd: string }[]>>;
}
