import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { KeyValueRecord } from '../store/records';
import type { MirrorStore } from '../store/store';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { toKeyValueRecord, toRevision, type WireRangeResponse } from './codec';
import { isRetained, keyspaceAt } from './history-view';
import { LIST_PAGE_KEYS } from './lister';
import type { Mirror } from './mirror';

const WHOLE_KEYSPACE = Buffer.from([0]);
const PAGE_TIMEOUT_MS = 30_000;

export type CheckResult = { kind: 'match'; revision: number; keys: number } | { kind: 'mismatch'; revision: number; key: Buffer; detail: string } | { kind: 'skipped'; reason: string };

function describe(record: KeyValueRecord | undefined): string {
  if (record === undefined) return 'absent';
  return `create=${record.create_revision} mod=${record.mod_revision} version=${record.version} lease=${record.lease} value=${record.value.length}B`;
}

function sameRecord(a: KeyValueRecord, b: KeyValueRecord): boolean {
  return (
    a.key.equals(b.key) &&
    a.create_revision === b.create_revision &&
    a.mod_revision === b.mod_revision &&
    a.version === b.version &&
    a.lease === b.lease &&
    a.value.equals(b.value)
  );
}

/**
 * Compares the mirror with the upstream at one revision R (the mirror's
 * revision when the check starts), page by page: each upstream page, read at
 * R, against the mirror's keys of the same key range as they were at R (the
 * log undoes what arrived since), so writes during the check do not matter.
 */
export async function checkConsistency(store: MirrorStore, pool: UpstreamPool, stopped: () => boolean = () => false): Promise<CheckResult> {
  const member = pool.candidates()[0];
  const revision = store.meta().revision;
  if (member === undefined || revision === 0) return { kind: 'skipped', reason: 'nothing to compare' };
  let from = WHOLE_KEYSPACE;
  let keys = 0;
  for (;;) {
    const page = await callUpstream<WireRangeResponse>(
      member.client,
      'etcdserverpb.KV',
      'Range',
      { key: from, range_end: WHOLE_KEYSPACE, limit: String(LIST_PAGE_KEYS), revision: String(revision), serializable: false },
      { deadlineMs: PAGE_TIMEOUT_MS },
    );
    // A re-list (or a stop) during the check leaves nothing comparable at R.
    if (stopped()) return { kind: 'skipped', reason: 'stopped' };
    if (!isRetained(store, revision)) return { kind: 'skipped', reason: 'the mirror moved past the checked revision' };
    const upstream = (page.kvs ?? []).map(toKeyValueRecord);
    const last = upstream[upstream.length - 1];
    const more = page.more === true && last !== undefined;
    // The mirror's keys from `from` up to the page's last key (all of them on the last page).
    const until = more ? Buffer.concat([last.key, Buffer.from([0])]) : null;
    const mirrored = [...keyspaceAt(store, revision, from, until, false).scan(from, until)];
    for (let i = 0; i < Math.max(mirrored.length, upstream.length); i += 1) {
      const ours = mirrored[i];
      const theirs = upstream[i];
      if (ours === undefined || theirs === undefined || !sameRecord(ours, theirs)) {
        const key = (ours === undefined ? theirs?.key : theirs === undefined ? ours.key : Buffer.compare(ours.key, theirs.key) <= 0 ? ours.key : theirs.key) ?? Buffer.alloc(0);
        return { kind: 'mismatch', revision, key, detail: `mirror ${describe(ours)}, upstream ${describe(theirs)}` };
      }
    }
    keys += upstream.length;
    if (!more) return { kind: 'match', revision: toRevision(String(revision)), keys };
    from = until ?? WHOLE_KEYSPACE;
  }
}

export interface ConsistencyChecker {
  runOnce(): Promise<CheckResult>;
  close(): void;
}

/**
 * Runs the check every `intervalMs` in the background (contract section 7): a
 * mismatch is logged, counted and repaired by a fresh list.
 */
export function startConsistencyChecks(deps: {
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly mirror: Mirror;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly intervalMs: number;
}): ConsistencyChecker {
  let running: Promise<CheckResult> | null = null;
  let stopped = false;
  const round = async (): Promise<CheckResult> => {
    let result: CheckResult;
    try {
      result = await checkConsistency(deps.store, deps.pool, () => stopped);
    } catch (error) {
      deps.metrics.consistencyChecks.inc({ result: 'error' });
      deps.log.debug({ err: error instanceof Error ? error.message : String(error) }, 'consistency check could not run');
      return { kind: 'skipped', reason: error instanceof Error ? error.message : String(error) };
    }
    if (result.kind === 'mismatch') {
      deps.metrics.consistencyChecks.inc({ result: 'mismatch' });
      deps.log.error({ revision: result.revision, key: result.key.toString('base64'), detail: result.detail }, 'mirror differs from the upstream: re-listing');
      deps.mirror.requestRelist('consistency check found a difference');
    } else if (result.kind === 'match') {
      deps.metrics.consistencyChecks.inc({ result: 'match' });
    }
    return result;
  };
  const runOnce = (): Promise<CheckResult> => {
    running ??= round().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = deps.intervalMs > 0 ? setInterval(() => void runOnce(), deps.intervalMs) : null;
  timer?.unref();
  return {
    runOnce,
    // A check in flight may be waiting on the upstream; it touches the store
    // no more once stopped, so a stop need not wait for it.
    close() {
      stopped = true;
      if (timer !== null) clearInterval(timer);
    },
  };
}
