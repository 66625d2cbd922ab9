import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** The mirror and the store under it: its revision, re-lists, reconnect waits, consistency checks, what LMDB holds. */
export interface MirrorMetrics {
  readonly mirrorRevision: Gauge;
  readonly mirrorRelists: Counter;
  /** Waits before the mirror tries etcd again (after a failure, or when etcd is back), jittered. */
  readonly mirrorReconnectDelay: Histogram;
  readonly consistencyChecks: Counter<'result'>;
  readonly consistencyCheckBytes: Counter;
  readonly storeKeys: Gauge;
  readonly storeLogRevisions: Gauge;
  readonly storeBytes: Gauge;
  /** 1 while the store holds its writes back after one failed for lack of room (the mirror stays at M). */
  readonly storeFull: Gauge;
  readonly storeWriteFailures: Counter<'reason'>;
}

export function createMirrorMetrics(registry: Registry): MirrorMetrics {
  return {
    mirrorRevision: new Gauge({
      name: `${METRIC_PREFIX}mirror_revision`,
      help: 'M: the highest upstream revision whose events are all committed to the mirror',
      registers: [registry],
    }),
    mirrorRelists: new Counter({
      name: `${METRIC_PREFIX}mirror_relists_total`,
      help: 'Times the mirror listed the whole upstream keyspace (first sync, compaction, new cluster)',
      registers: [registry],
    }),
    mirrorReconnectDelay: new Histogram({
      name: `${METRIC_PREFIX}mirror_reconnect_delay_seconds`,
      help: 'Waits before the mirror tries etcd again, after a failure or when etcd is back: random, growing, capped (full jitter)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [registry],
    }),
    consistencyChecks: new Counter({
      name: `${METRIC_PREFIX}consistency_checks_total`,
      help: 'Background comparisons of the mirror with the upstream, by result (match, mismatch, error)',
      labelNames: ['result'],
      registers: [registry],
    }),
    consistencyCheckBytes: new Counter({
      name: `${METRIC_PREFIX}consistency_check_bytes_total`,
      help: 'Key bytes the rolling consistency check has read from the upstream',
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
    storeFull: new Gauge({
      name: `${METRIC_PREFIX}store_full`,
      help: '1 while the mirror store holds its writes back because one failed for lack of room (disk or LMDB map full): the mirror stays at its revision until there is room',
      registers: [registry],
    }),
    storeWriteFailures: new Counter({
      name: `${METRIC_PREFIX}store_write_failures_total`,
      help: 'Writes to the mirror store that failed, by reason (no_space: disk or LMDB map full; other)',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
