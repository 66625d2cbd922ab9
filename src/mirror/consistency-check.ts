import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { MirrorStore } from '../store/store';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { isRetained, keyspaceAt } from './history-view';
import type { Mirror } from './mirror';
import { KeyRanges, type KeyRange } from '../etcd/key-ranges';
import type { RangeQueries } from './mirror-scope';
import { LIST_PAGE_KEYS, rangePages } from './paged-range';
import type { GrayscaleView } from '../grayscale/view';

/** etcd's range_end for "every key from the start on". */
const ALL_ABOVE = Buffer.from([0]);

/** Assumed size of a key before the mirror holds any. */
const DEFAULT_RECORD_BYTES = 1024;

export type StepResult =
  | { kind: 'page'; keys: number; bytes: number }
  /** The page that ended a round: `bytes` its own, `roundBytes` the whole round's. */
  | { kind: 'round'; keys: number; bytes: number; roundBytes: number }
  | { kind: 'mismatch'; revision: number; key: Buffer; detail: string }
  | { kind: 'skipped'; reason: string };

function describe(record: EncodedKeyValue | undefined): string {
  if (record === undefined) return 'absent';
  return `create=${record.create_revision} mod=${record.mod_revision} version=${record.version} lease=${record.lease} value=${record.value.length}B`;
}

/** Both sides are etcd's encoding of the key (our encoder writes what etcd writes): equal content is equal bytes. */
function sameRecord(a: EncodedKeyValue, b: EncodedKeyValue): boolean {
  return a.bytes.equals(b.bytes);
}

/** The first difference between the mirror's records and etcd's for one key span, or null. */
function firstDifference(mirrored: readonly EncodedKeyValue[], upstream: readonly EncodedKeyValue[]): { key: Buffer; detail: string } | null {
  for (let i = 0; i < Math.max(mirrored.length, upstream.length); i += 1) {
    const ours = mirrored[i];
    const theirs = upstream[i];
    if (ours === undefined || theirs === undefined || !sameRecord(ours, theirs)) {
      const key = (ours === undefined ? theirs?.key : theirs === undefined ? ours.key : Buffer.compare(ours.key, theirs.key) <= 0 ? ours.key : theirs.key) ?? Buffer.alloc(0);
      return { key, detail: `mirror ${describe(ours)}, upstream ${describe(theirs)}` };
    }
  }
  return null;
}

const inSpan = (key: Buffer, start: Buffer, end: Buffer | null): boolean => Buffer.compare(key, start) >= 0 && (end === null || Buffer.compare(key, end) < 0);

/**
 * The mirror's side as etcd held it, where this machine withholds versions
 * (grayscale/): each key's withheld version stands in for the one shown.
 * True only while no key under the grayscale prefixes changed after the
 * compared revision (the caller skips the page otherwise): the withheld
 * versions are kept for now, not for the past.
 */
function withWithheld(store: MirrorStore, start: Buffer, end: Buffer | null, mirrored: EncodedKeyValue[]): readonly EncodedKeyValue[] {
  const withheld = [...store.allWithheld()].filter((record) => inSpan(record.key, start, end));
  if (withheld.length === 0) return mirrored;
  const byKey = new Map(mirrored.map((record) => [record.key.toString('latin1'), record]));
  for (const record of withheld) byKey.set(record.key.toString('latin1'), record);
  return [...byKey.values()].sort((a, b) => Buffer.compare(a.key, b.key));
}

/** Keys withheld here (grayscale/) in [start, end) that show no version at all: etcd counts them, the mirror does not. */
function withheldUnshown(store: MirrorStore, start: Buffer, end: Buffer | null): number {
  let count = 0;
  for (const record of store.allWithheld()) if (inSpan(record.key, start, end) && store.get(record.key) === undefined) count += 1;
  return count;
}

export interface ConsistencyChecker {
  /** Takes the next step now (tests). */
  step(): Promise<StepResult>;
  close(): void;
}

/**
 * Compares the mirror with etcd round the mirrored key ranges, one page at a
 * time, within a byte budget (docs/design.md, "Persistence", and what a fleet of
 * proxies may cost etcd): each step reads one page of keys at the mirror's
 * revision R and compares it with the mirror's keys of the same span as they
 * were at R (the log undoes what arrived since, so writes meanwhile do not
 * matter); a page holds about as many keys as the budget allows for the step
 * interval, and the next step waits as long as the bytes read take to fit the
 * budget. Each round begins with cheap evidence for the whole keyspace: the
 * count of every mirrored range at R, one count-only read each. A difference
 * is logged, counted and repaired by a fresh list.
 */
export function startConsistencyChecks(deps: {
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly mirror: Mirror;
  readonly ranges: RangeQueries;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** The least time between two steps; 0 turns the check off. */
  readonly intervalMs: number;
  /** What the check may read from etcd, averaged. */
  readonly bytesPerSecond: number;
  readonly identity?: UpstreamLogin;
  /** This machine's view under grayscale prefixes: what it withholds is compared as etcd holds it. */
  readonly grayscale?: GrayscaleView;
}): ConsistencyChecker {
  const { store, pool, ranges, metrics, log } = deps;
  let stopped = false;
  /** Where the next page starts: a mirrored range, and a key in it (null: its start, and a new round when it is the first). */
  let rangeIndex = 0;
  let from: Buffer | null = null;
  let roundKeys = 0;
  let roundBytes = 0;

  const pageKeys = (): number => {
    const stats = store.stats();
    const recordBytes = stats.keys > 0 ? Math.max(1, Math.round(stats.bytes / stats.keys)) : DEFAULT_RECORD_BYTES;
    return Math.max(1, Math.min(LIST_PAGE_KEYS, Math.floor((deps.bytesPerSecond * Math.max(deps.intervalMs, 1000)) / 1000 / recordBytes)));
  };

  const restart = (): void => {
    rangeIndex = 0;
    from = null;
    roundKeys = 0;
    roundBytes = 0;
  };

  /** The whole keyspace's cheap evidence: every mirrored range's count at R, where the mirror is at R still. */
  const countsAgree = async (member: UpstreamMember, revision: number): Promise<StepResult | null> => {
    for (const range of ranges.ranges) {
      const request = KeyRanges.toRequest(range);
      const answer = await callUpstream<{ count?: string }>(
        member.client,
        'etcdserverpb.KV',
        'Range',
        { ...request, revision: String(revision), count_only: true, serializable: true },
        { deadlineMs: 10_000, metadata: deps.identity?.metadataFor(member) ?? new Metadata(), reason: 'consistency-check' },
      );
      if (store.meta().revision !== revision) return null; // moved meanwhile: nothing to compare at R cheaply
      const mirrored = store.count(range.start, range.end) + withheldUnshown(store, range.start, range.end);
      const upstream = Number(answer.count ?? '0');
      if (mirrored !== upstream) return { kind: 'mismatch', revision, key: range.start, detail: `mirror holds ${mirrored} keys in the range, upstream ${upstream}` };
    }
    return null;
  };

  const step = async (): Promise<StepResult> => {
    const member = pool.candidates()[0];
    const revision = store.meta().revision;
    if (member === undefined || revision === 0 || !deps.mirror.hasData()) return { kind: 'skipped', reason: 'nothing to compare' };
    await deps.identity?.readyAt(member);
    const range: KeyRange | undefined = ranges.ranges[rangeIndex];
    if (range === undefined) {
      restart();
      return { kind: 'skipped', reason: 'no mirrored range' };
    }
    if (rangeIndex === 0 && from === null) {
      const counts = await countsAgree(member, revision);
      if (counts !== null) return counts;
    }
    const start = from ?? KeyRanges.toRequest(range).key;
    const pages = rangePages(member.client, 'consistency-check', { start, end: range.end }, revision, () => deps.identity?.metadataFor(member) ?? new Metadata(), pageKeys());
    const first = await pages.next();
    await pages.return(undefined);
    if (first.done === true) return { kind: 'skipped', reason: 'no page' };
    const page = first.value;
    if (stopped) return { kind: 'skipped', reason: 'stopped' };
    if (!isRetained(store, revision)) return { kind: 'skipped', reason: 'the mirror moved past the checked revision' };
    if (deps.grayscale !== undefined && deps.grayscale.lastChange > revision && deps.grayscale.touches(start, page.end ?? ALL_ABOVE)) {
      return { kind: 'skipped', reason: 'grayscale keys changed after the checked revision' };
    }
    const mirrored = withWithheld(store, start, page.end, [...keyspaceAt(store, revision, start, page.end, false).scan(start, page.end)]);
    const difference = firstDifference(mirrored, page.records);
    if (difference !== null) return { kind: 'mismatch', revision, ...difference };
    const bytes = page.records.reduce((sum, record) => sum + record.bytes.length, 0);
    roundKeys += page.records.length;
    roundBytes += bytes;
    const rangeEnd = range.end;
    const endOfRange = page.end === null || (rangeEnd !== null && Buffer.compare(page.end, rangeEnd) >= 0);
    if (!endOfRange) {
      from = page.end;
      return { kind: 'page', keys: page.records.length, bytes };
    }
    rangeIndex += 1;
    from = null;
    if (rangeIndex < ranges.ranges.length) return { kind: 'page', keys: page.records.length, bytes };
    const round = { kind: 'round' as const, keys: roundKeys, bytes, roundBytes };
    restart();
    return round;
  };

  const record = (result: StepResult): number => {
    switch (result.kind) {
      case 'mismatch':
        metrics.consistencyChecks.inc({ result: 'mismatch' });
        log.error({ revision: result.revision, key: result.key.toString('base64'), detail: result.detail }, 'mirror differs from the upstream: re-listing');
        deps.mirror.requestRelist('consistency check found a difference');
        restart();
        return 0;
      case 'round':
        metrics.consistencyChecks.inc({ result: 'match' });
        metrics.consistencyCheckBytes.inc(result.bytes);
        log.debug({ keys: result.keys, bytes: result.roundBytes }, 'consistency check round complete');
        return result.bytes;
      case 'page':
        metrics.consistencyCheckBytes.inc(result.bytes);
        return result.bytes;
      case 'skipped':
        return 0;
    }
  };

  let timer: NodeJS.Timeout | null = null;
  const schedule = (delayMs: number): void => {
    if (stopped || deps.intervalMs <= 0) return;
    timer = setTimeout(() => {
      step().then(
        (result) => schedule(Math.max(deps.intervalMs, (record(result) / deps.bytesPerSecond) * 1000)),
        (error: unknown) => {
          metrics.consistencyChecks.inc({ result: 'error' });
          log.debug({ err: error instanceof Error ? error.message : String(error) }, 'consistency check step could not run');
          schedule(deps.intervalMs);
        },
      );
    }, delayMs);
    timer.unref();
  };
  schedule(deps.intervalMs);
  return {
    step: async () => {
      const result = await step();
      record(result);
      return result;
    },
    // A step in flight may be waiting on the upstream; it touches the store
    // no more once stopped, so a stop need not wait for it.
    close() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
