import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { MirrorStore } from '../store/store';
import type { UpstreamIdentity } from '../upstream/identity';
import type { UpstreamPool } from '../upstream/pool';
import { isRetained, keyspaceAt } from './history-view';
import type { Mirror } from './mirror';
import { MirroredRanges } from './mirrored-ranges';
import { rangePages } from './paged-range';

export type CheckResult = { kind: 'match'; revision: number; keys: number } | { kind: 'mismatch'; revision: number; key: Buffer; detail: string } | { kind: 'skipped'; reason: string };

function describe(record: EncodedKeyValue | undefined): string {
  if (record === undefined) return 'absent';
  return `create=${record.create_revision} mod=${record.mod_revision} version=${record.version} lease=${record.lease} value=${record.value.length}B`;
}

/** Both sides are etcd's encoding of the key (our encoder writes what etcd writes): equal content is equal bytes. */
function sameRecord(a: EncodedKeyValue, b: EncodedKeyValue): boolean {
  return a.bytes.equals(b.bytes);
}

/**
 * Compares the mirror with the upstream at one revision R (the mirror's
 * revision when the check starts), page by page over every mirrored range:
 * each upstream page, read at R, against the mirror's keys of the same key
 * range as they were at R (the log undoes what arrived since), so writes
 * during the check do not matter.
 */
export async function checkConsistency(
  store: MirrorStore,
  pool: UpstreamPool,
  ranges: MirroredRanges,
  stopped: () => boolean = () => false,
  identity?: UpstreamIdentity,
): Promise<CheckResult> {
  const member = pool.candidates()[0];
  const revision = store.meta().revision;
  if (member === undefined || revision === 0) return { kind: 'skipped', reason: 'nothing to compare' };
  await identity?.readyAt(member);
  let keys = 0;
  for (const range of ranges.ranges) {
    let from = MirroredRanges.toRequest(range).key;
    for await (const page of rangePages(member.client, range, revision, () => identity?.metadataFor(member) ?? new Metadata())) {
      // A re-list (or a stop) during the check leaves nothing comparable at R.
      if (stopped()) return { kind: 'skipped', reason: 'stopped' };
      if (!isRetained(store, revision)) return { kind: 'skipped', reason: 'the mirror moved past the checked revision' };
      const upstream = page.records;
      const mirrored = [...keyspaceAt(store, revision, from, page.end, false).scan(from, page.end)];
      for (let i = 0; i < Math.max(mirrored.length, upstream.length); i += 1) {
        const ours = mirrored[i];
        const theirs = upstream[i];
        if (ours === undefined || theirs === undefined || !sameRecord(ours, theirs)) {
          const key = (ours === undefined ? theirs?.key : theirs === undefined ? ours.key : Buffer.compare(ours.key, theirs.key) <= 0 ? ours.key : theirs.key) ?? Buffer.alloc(0);
          return { kind: 'mismatch', revision, key, detail: `mirror ${describe(ours)}, upstream ${describe(theirs)}` };
        }
      }
      keys += upstream.length;
      if (page.end !== null) from = page.end;
    }
  }
  return { kind: 'match', revision, keys };
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
  readonly ranges: MirroredRanges;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly identity?: UpstreamIdentity;
}): ConsistencyChecker {
  let running: Promise<CheckResult> | null = null;
  let stopped = false;
  const round = async (): Promise<CheckResult> => {
    let result: CheckResult;
    try {
      result = await checkConsistency(deps.store, deps.pool, deps.ranges, () => stopped, deps.identity);
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
