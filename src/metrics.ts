import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { statusName } from './etcd/errors';

export const METRIC_PREFIX = 'etcd_cache_proxy_';

/** Where an answer came from: the upstream cluster or the proxy's own mirror. */
export type Source = 'upstream' | 'mirror' | 'proxy';

/** The proxy's instruments, all registered on the registry passed in (tests get a fresh one each). */
export interface Metrics {
  readonly registry: Registry;
  /** Finished gRPC calls by service, method, status code name and source (count them with `calls`). */
  readonly grpcRequests: Counter<'service' | 'method' | 'code' | 'source'>;
  /** The hot path's way into grpcRequests. */
  readonly calls: CallCounts;
  readonly grpcRequestDuration: Histogram<'service' | 'method'>;
  /** Open gRPC streams (Watch, LeaseKeepAlive, Snapshot) by service and method. */
  readonly grpcStreamsOpen: Gauge<'service' | 'method'>;
  /** Client connections asked to move (graceful GOAWAY) before Node's HTTP/2 reset limit would end them (Node < 22.10). */
  readonly grpcConnectionsMoved: Counter;
  /** HTTP requests on the gateway side by path group and status. */
  readonly httpRequests: Counter<'path' | 'status'>;
  readonly writesRejected: Counter<'reason'>;
  readonly staleReads: Counter;
  readonly mirrorRevision: Gauge;
  readonly upstreamUp: Gauge;
  readonly upstreamAuthRequired: Gauge;
  readonly readBarrierCalls: Counter;
  /** Every call the proxy starts upstream, streams once when opened: what it costs etcd, and why. */
  readonly upstreamCalls: Counter<'method' | 'reason'>;
  readonly mirrorRelists: Counter;
  /** Serving processes (--workers) that exited and were started again. */
  readonly workerRestarts: Counter;
  /** Serving processes (--workers) bound to the client port now: below the number asked for, one is down or restarting. */
  readonly workersServing: Gauge;
  /** Waits before the mirror tries etcd again (after a failure, or when etcd is back), jittered. */
  readonly mirrorReconnectDelay: Histogram;
  readonly unchangedPutsAcknowledged: Counter;
  /** Mirror reads answered with a kept encoded answer (hit) or made anew (miss); count them with `cacheResults`. */
  readonly responseCacheRequests: Counter<'result'>;
  readonly cacheResults: ResultCounts<'hit' | 'miss'>;
  readonly responseCacheBytes: Gauge;
  readonly consistencyChecks: Counter<'result'>;
  readonly consistencyCheckBytes: Counter;
  readonly storeKeys: Gauge;
  readonly storeLogRevisions: Gauge;
  readonly storeBytes: Gauge;
  /** Downstream watches open, by who serves them (`mirror`: the watch hub, `upstream`: relayed). */
  readonly watchers: Gauge<'source'>;
  /** Upstream watch streams: the mirror's own and those relaying watches the mirror cannot serve. */
  readonly upstreamWatchStreams: Gauge;
  /** Upstream watches relaying downstream watches the mirror cannot serve (identical ones share one). */
  readonly upstreamRelayedWatches: Gauge;
  readonly watchEventsSent: Counter;
  readonly watchEventsReplayed: Counter;
  readonly slowWatchersCancelled: Counter;
  /** LeaseKeepAlive streams open to the upstream: at most one, shared by every downstream keep-alive stream. */
  readonly leaseKeepAliveUpstreamStreams: Gauge;
  /** Downstream keep-alives answered by a renewal of the same lease already on its way upstream. */
  readonly leaseKeepAlivesCoalesced: Counter;
  /** Upstream members the pool dials, and how many of them answered their last probe. */
  readonly upstreamMembers: Gauge;
  readonly upstreamMembersHealthy: Gauge;
  /** Per member: 1 when its last probe answered. */
  readonly upstreamMemberUp: Gauge<'member'>;
  readonly memberListRefreshes: Counter<'result'>;
  /** Work moved off a member: the mirror's watch resumed on another, or a read retried on another. */
  readonly upstreamFailovers: Counter<'kind'>;
  /** Endpoints dropped because they are the proxy itself. */
  readonly loopEndpointsDropped: Counter;
  readonly snapshots: Counter<'result'>;
  /** The mirror revision of the last snapshot written to --snapshot-dir. */
  readonly snapshotRevision: Gauge;
  /** Snapshots published to --snapshot-url, by result (published, skipped: not newer than latest, or a failure). */
  readonly snapshotUploads: Counter<'result'>;
  readonly snapshotUploadBytes: Counter;
  /** Fetches of the published snapshot while etcd is lost, by result. */
  readonly snapshotFetches: Counter<'result'>;
  readonly snapshotFetchBytes: Counter;
  /** The revision `latest` named after this proxy's last publish, and when that was (for the age alert). */
  readonly snapshotPublishedRevision: Gauge;
  readonly snapshotPublishedTimestamp: Gauge;
  /** Keys under grayscale prefixes whose newest version this machine does not show. */
  readonly grayscaleWithheldKeys: Gauge;
  /** Versions whose grayscale mark could not be read (they apply nowhere). */
  readonly grayscaleMalformedMarks: Counter;
  /** Logins that passed through the proxy and succeeded upstream. */
  readonly authLogins: Counter<'source'>;
  /** With auth on: decisions on what the mirror may serve a client (permit, refuse, forward). */
  readonly authDecisions: Counter<'result'>;
  /** Users whose permissions the proxy holds. */
  readonly authUsers: Gauge;
  /** Reads of a user's roles and permissions from etcd, by result. */
  readonly authPermissionReads: Counter<'result'>;
}

/** One RPC as metrics name it. */
export interface CallLabels {
  readonly service: string;
  readonly method: string;
}

const SOURCES: readonly Source[] = ['upstream', 'mirror', 'proxy'];
/** gRPC status codes run 0..16. */
const STATUS_CODES = 17;

interface PendingCount {
  readonly labels: Record<'service' | 'method' | 'code' | 'source', string>;
  count: number;
}

/**
 * Finished calls counted as plain numbers, one slot per RPC, status and
 * source, and handed to the prom-client counter whenever it is read (a
 * scrape, or get()): a read from the mirror takes microseconds, and
 * prom-client's label hashing per call was a measurable share of it.
 */
export class CallCounts {
  private readonly slots = new WeakMap<CallLabels, (PendingCount | undefined)[]>();
  private readonly pending = new Set<PendingCount>();

  count(rpc: CallLabels, code: number, source: Source): void {
    let slots = this.slots.get(rpc);
    if (slots === undefined) {
      slots = new Array<PendingCount | undefined>(STATUS_CODES * SOURCES.length);
      this.slots.set(rpc, slots);
    }
    const index = (code >= 0 && code < STATUS_CODES ? code : STATUS_CODES - 1) * SOURCES.length + SOURCES.indexOf(source);
    let slot = slots[index];
    if (slot === undefined) {
      slot = { labels: { service: rpc.service, method: rpc.method, code: statusName(code), source }, count: 0 };
      slots[index] = slot;
    }
    if (slot.count === 0) this.pending.add(slot);
    slot.count += 1;
  }

  /** Moves what was counted since the last read into the counter. */
  flush(counter: Counter<'service' | 'method' | 'code' | 'source'>): void {
    for (const slot of this.pending) {
      counter.inc(slot.labels, slot.count);
      slot.count = 0;
    }
    this.pending.clear();
  }
}

/** Counts by a `result` label as plain numbers, moved into the counter when it is read (as CallCounts). */
export class ResultCounts<R extends string> {
  private readonly pending = new Map<R, number>();

  count(result: R): void {
    this.pending.set(result, (this.pending.get(result) ?? 0) + 1);
  }

  flush(counter: Counter<'result'>): void {
    for (const [result, count] of this.pending) counter.inc({ result }, count);
    this.pending.clear();
  }
}

export function createMetrics(registry: Registry = new Registry()): Metrics {
  collectDefaultMetrics({ register: registry });
  const calls = new CallCounts();
  const cacheResults = new ResultCounts<'hit' | 'miss'>();
  return {
    calls,
    cacheResults,
    registry,
    grpcRequests: new Counter({
      name: `${METRIC_PREFIX}grpc_requests_total`,
      help: 'gRPC calls finished, by service, method, status code and source of the answer',
      labelNames: ['service', 'method', 'code', 'source'],
      registers: [registry],
      collect() {
        calls.flush(this);
      },
    }),
    grpcRequestDuration: new Histogram({
      name: `${METRIC_PREFIX}grpc_request_duration_seconds`,
      help: 'Latency of unary gRPC calls as seen by the proxy',
      labelNames: ['service', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    grpcStreamsOpen: new Gauge({
      name: `${METRIC_PREFIX}grpc_streams_open`,
      help: 'gRPC streams currently open, by service and method',
      labelNames: ['service', 'method'],
      registers: [registry],
    }),
    grpcConnectionsMoved: new Counter({
      name: `${METRIC_PREFIX}grpc_connections_moved_total`,
      help: 'Client connections asked to reconnect (GOAWAY NO_ERROR) before the HTTP/2 stream-reset limit of Node before 22.10 would have closed them with INTERNAL_ERROR',
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: `${METRIC_PREFIX}http_requests_total`,
      help: 'HTTP requests answered on the gateway side, by path and status',
      labelNames: ['path', 'status'],
      registers: [registry],
    }),
    writesRejected: new Counter({
      name: `${METRIC_PREFIX}writes_rejected_total`,
      help: 'Writes the proxy refused itself, by reason (readonly, upstream_lost)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    staleReads: new Counter({
      name: `${METRIC_PREFIX}stale_reads_total`,
      help: 'Reads answered from the mirror while the upstream could not confirm freshness',
      registers: [registry],
    }),
    mirrorRevision: new Gauge({
      name: `${METRIC_PREFIX}mirror_revision`,
      help: 'M: the highest upstream revision whose events are all committed to the mirror',
      registers: [registry],
    }),
    upstreamUp: new Gauge({
      name: `${METRIC_PREFIX}upstream_up`,
      help: '1 while some upstream member answers within the upstream timeout, else 0',
      registers: [registry],
    }),
    upstreamAuthRequired: new Gauge({
      name: `${METRIC_PREFIX}upstream_auth_required`,
      help: '1 while the upstream refuses anonymous reads (auth enabled): the mirror serves nothing and every request is forwarded',
      registers: [registry],
    }),
    authLogins: new Counter({
      name: `${METRIC_PREFIX}auth_logins_total`,
      help: 'Logins that passed through the proxy and succeeded, by who answered them (upstream)',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    authDecisions: new Counter({
      name: `${METRIC_PREFIX}auth_decisions_total`,
      help: 'With auth on: decisions on what the mirror may serve a client, by result (permit, refuse, forward: a token the proxy did not see issued)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    authUsers: new Gauge({
      name: `${METRIC_PREFIX}auth_users`,
      help: 'Users whose roles and permissions the proxy holds',
      // Every serving process (--workers) holds the same users: summed, they would count N times.
      aggregator: 'max',
      registers: [registry],
    }),
    authPermissionReads: new Counter({
      name: `${METRIC_PREFIX}auth_permission_reads_total`,
      help: "Reads of a user's roles and permissions from etcd (UserGet and RoleGet with the user's token), by result",
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    mirrorReconnectDelay: new Histogram({
      name: `${METRIC_PREFIX}mirror_reconnect_delay_seconds`,
      help: 'Waits before the mirror tries etcd again, after a failure or when etcd is back: random, growing, capped (full jitter)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [registry],
    }),
    upstreamCalls: new Counter({
      name: `${METRIC_PREFIX}upstream_calls_total`,
      help: 'Calls the proxy started upstream, by method (KV/Range) and reason (client, read-barrier, mirror-watch, liveness...); a stream counts once, when opened',
      labelNames: ['method', 'reason'] as const,
      registers: [registry],
    }),
    readBarrierCalls: new Counter({
      name: `${METRIC_PREFIX}read_barrier_upstream_calls_total`,
      help: 'Linearizable upstream calls made to serve linearizable reads from the mirror',
      registers: [registry],
    }),
    consistencyCheckBytes: new Counter({
      name: `${METRIC_PREFIX}consistency_check_bytes_total`,
      help: 'Key bytes the rolling consistency check has read from the upstream',
      registers: [registry],
    }),
    consistencyChecks: new Counter({
      name: `${METRIC_PREFIX}consistency_checks_total`,
      help: 'Background comparisons of the mirror with the upstream, by result (match, mismatch, error)',
      labelNames: ['result'],
      registers: [registry],
    }),
    unchangedPutsAcknowledged: new Counter({
      name: `${METRIC_PREFIX}unchanged_puts_acknowledged_total`,
      help: 'Puts of a value the mirror already held, acknowledged from the mirror while the upstream was lost (gateway start-up markers)',
      registers: [registry],
    }),
    responseCacheRequests: new Counter({
      name: `${METRIC_PREFIX}response_cache_requests_total`,
      help: 'Mirror reads by whether their encoded answer was kept from an identical read (hit) or made (miss)',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        cacheResults.flush(this);
      },
    }),
    responseCacheBytes: new Gauge({
      name: `${METRIC_PREFIX}response_cache_bytes`,
      help: 'Bytes of encoded answers kept for repeated mirror reads (bounded by --response-cache-bytes)',
      registers: [registry],
    }),
    storeKeys: new Gauge({
      name: `${METRIC_PREFIX}store_keys`,
      help: 'Keys in the mirror',
      registers: [registry],
    }),
    storeLogRevisions: new Gauge({
      name: `${METRIC_PREFIX}store_log_revisions`,
      help: 'Revisions held in the mirror event log',
      registers: [registry],
    }),
    storeBytes: new Gauge({
      name: `${METRIC_PREFIX}store_bytes`,
      help: 'Bytes the LMDB environment uses',
      registers: [registry],
    }),
    watchers: new Gauge({
      name: `${METRIC_PREFIX}watchers`,
      help: 'Downstream watches open, by source (mirror: served by the watch hub; upstream: relayed)',
      labelNames: ['source'],
      registers: [registry],
    }),
    upstreamWatchStreams: new Gauge({
      name: `${METRIC_PREFIX}upstream_watch_streams`,
      help: "Watch streams open to the upstream: the mirror's own and those relaying watches it cannot serve",
      registers: [registry],
    }),
    upstreamRelayedWatches: new Gauge({
      name: `${METRIC_PREFIX}upstream_relayed_watches`,
      help: 'Upstream watches relaying downstream watches the mirror cannot serve; identical downstream watches share one',
      registers: [registry],
    }),
    watchEventsSent: new Counter({
      name: `${METRIC_PREFIX}watch_events_sent_total`,
      help: 'Events sent to downstream watchers by the watch hub',
      registers: [registry],
    }),
    watchEventsReplayed: new Counter({
      name: `${METRIC_PREFIX}watch_events_replayed_total`,
      help: 'Events replayed to downstream watchers from the event log on disk',
      registers: [registry],
    }),
    slowWatchersCancelled: new Counter({
      name: `${METRIC_PREFIX}slow_watchers_cancelled_total`,
      help: 'Downstream watches cancelled because their client did not read fast enough',
      registers: [registry],
    }),
    leaseKeepAliveUpstreamStreams: new Gauge({
      name: `${METRIC_PREFIX}lease_keepalive_upstream_streams`,
      help: 'LeaseKeepAlive streams open to the upstream (one shared by every downstream keep-alive stream)',
      registers: [registry],
    }),
    leaseKeepAlivesCoalesced: new Counter({
      name: `${METRIC_PREFIX}lease_keepalives_coalesced_total`,
      help: 'Downstream lease keep-alives answered by a renewal of the same lease already in flight upstream',
      registers: [registry],
    }),
    upstreamMembers: new Gauge({
      name: `${METRIC_PREFIX}upstream_members`,
      help: 'Upstream members known (from discovery and the member list refresh)',
      registers: [registry],
    }),
    upstreamMembersHealthy: new Gauge({
      name: `${METRIC_PREFIX}upstream_members_healthy`,
      help: 'Upstream members whose last probe (Status with require-leader) answered',
      registers: [registry],
    }),
    upstreamMemberUp: new Gauge({
      name: `${METRIC_PREFIX}upstream_member_up`,
      help: '1 when the member answered its last probe, 0 when not',
      labelNames: ['member'],
      registers: [registry],
    }),
    memberListRefreshes: new Counter({
      name: `${METRIC_PREFIX}member_list_refreshes_total`,
      help: 'Member list refreshes (Cluster.MemberList, or discovery while no member is known) by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    upstreamFailovers: new Counter({
      name: `${METRIC_PREFIX}upstream_failovers_total`,
      help: "Work moved to another member: kind=mirror_watch (the mirror's upstream watch), read_retry (a forwarded read), write_not_sent (a write whose member could not be reached)",
      labelNames: ['kind'],
      registers: [registry],
    }),
    loopEndpointsDropped: new Counter({
      name: `${METRIC_PREFIX}loop_endpoints_dropped_total`,
      help: 'Upstream endpoints dropped because they are this proxy itself (loop guard)',
      registers: [registry],
    }),
    snapshots: new Counter({
      name: `${METRIC_PREFIX}snapshots_total`,
      help: 'Periodic snapshots written to --snapshot-dir, by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    snapshotRevision: new Gauge({
      name: `${METRIC_PREFIX}snapshot_revision`,
      help: 'Mirror revision of the last snapshot written to --snapshot-dir',
      registers: [registry],
    }),
    snapshotUploads: new Counter({
      name: `${METRIC_PREFIX}snapshot_uploads_total`,
      help: 'Publishes to --snapshot-url, by result: published, skipped (latest is as new), unreachable, denied, missing, failed',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    snapshotUploadBytes: new Counter({
      name: `${METRIC_PREFIX}snapshot_upload_bytes_total`,
      help: 'Bytes of snapshots and apisix.yaml uploaded to --snapshot-url',
      registers: [registry],
    }),
    snapshotFetches: new Counter({
      name: `${METRIC_PREFIX}snapshot_fetches_total`,
      help: 'Fetches of the published snapshot while etcd is unreachable, by result: adopted, none-newer, refused (damaged, truncated, another cluster), bad-signature (with --snapshot-verify-key: unsigned, unknown key, not verifying, or not the file signed), too-large (past --snapshot-max-bytes, not downloaded), unreachable, denied, missing, failed',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    snapshotFetchBytes: new Counter({
      name: `${METRIC_PREFIX}snapshot_fetch_bytes_total`,
      help: 'Bytes of published snapshots downloaded to disk, also of those refused after download',
      registers: [registry],
    }),
    snapshotPublishedRevision: new Gauge({
      name: `${METRIC_PREFIX}snapshot_published_revision`,
      help: 'The revision latest named after this proxy last published (or found it as new)',
      registers: [registry],
    }),
    grayscaleWithheldKeys: new Gauge({
      name: `${METRIC_PREFIX}grayscale_withheld_keys`,
      help: 'Keys under --grayscale-prefix whose newest version is marked for other machines and not shown here (GET /grayscale lists them)',
      registers: [registry],
    }),
    grayscaleMalformedMarks: new Counter({
      name: `${METRIC_PREFIX}grayscale_malformed_marks_total`,
      help: 'Versions under --grayscale-prefix whose annotations.grayscale could not be read: they apply on no machine',
      registers: [registry],
    }),
    snapshotPublishedTimestamp: new Gauge({
      name: `${METRIC_PREFIX}snapshot_published_timestamp_seconds`,
      help: 'When this proxy last found latest as new as its mirror, by publishing or because its mirror had not moved (Unix time): an age past a few --snapshot-interval means its publishing stopped',
      registers: [registry],
    }),
    workerRestarts: new Counter({
      name: `${METRIC_PREFIX}worker_restarts_total`,
      help: 'Serving processes (--workers) that exited unasked and were started again',
      registers: [registry],
    }),
    workersServing: new Gauge({
      name: `${METRIC_PREFIX}workers_serving`,
      help: 'Serving processes (--workers) bound to the client port now',
      registers: [registry],
    }),
    mirrorRelists: new Counter({
      name: `${METRIC_PREFIX}mirror_relists_total`,
      help: 'Times the mirror listed the whole upstream keyspace (first sync, compaction, new cluster)',
      registers: [registry],
    }),
  };
}
