import { Metadata } from '@grpc/grpc-js';
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

export interface ConsistencyRoundDeps {
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly mirror: Mirror;
  readonly ranges: RangeQueries;
  /** The least time between two steps (a page holds what the budget allows for it); 0 turns the check off. */
  readonly intervalMs: number;
  /** What the check may read from etcd, averaged. */
  readonly bytesPerSecond: number;
  readonly identity?: UpstreamLogin;
  /** This machine's view under grayscale prefixes: what it withholds is compared as etcd holds it. */
  readonly grayscale?: GrayscaleView;
}

/**
 * One comparison of the mirror with etcd round the mirrored key ranges, a
 * page per step: where the next page starts, and what the round has read.
 * Each round begins with every mirrored range's count at the mirror's
 * revision R; each page is compared with the mirror's keys as they were at R.
 */
export class ConsistencyRound {
  private stopped = false;
  /** Where the next page starts: a mirrored range, and a key in it (null: its start, and a new round when it is the first). */
  private rangeIndex = 0;
  private from: Buffer | null = null;
  private roundKeys = 0;
  private roundBytes = 0;

  constructor(private readonly deps: ConsistencyRoundDeps) {}

  /** Starts the next step at a new round (after a round, or a difference that a list repairs). */
  restart(): void {
    this.rangeIndex = 0;
    this.from = null;
    this.roundKeys = 0;
    this.roundBytes = 0;
  }

  /** A step in flight touches the store no more. */
  stop(): void {
    this.stopped = true;
  }

  /** Compares the next page (and, at a round's start, the counts). */
  async step(): Promise<StepResult> {
    const { store, ranges } = this.deps;
    const member = this.deps.pool.candidates()[0];
    const revision = store.meta().revision;
    if (member === undefined || revision === 0 || !this.deps.mirror.hasData()) return { kind: 'skipped', reason: 'nothing to compare' };
    await this.deps.identity?.readyAt(member);
    const range: KeyRange | undefined = ranges.ranges[this.rangeIndex];
    if (range === undefined) {
      this.restart();
      return { kind: 'skipped', reason: 'no mirrored range' };
    }
    if (this.rangeIndex === 0 && this.from === null) {
      const counts = await this.countsAgree(member, revision);
      if (counts !== null) return counts;
    }
    const start = this.from ?? KeyRanges.toRequest(range).key;
    const pages = rangePages(member.client, 'consistency-check', { start, end: range.end }, revision, () => this.deps.identity?.metadataFor(member) ?? new Metadata(), this.pageKeys());
    const first = await pages.next();
    await pages.return(undefined);
    if (first.done === true) return { kind: 'skipped', reason: 'no page' };
    const page = first.value;
    if (this.stopped) return { kind: 'skipped', reason: 'stopped' };
    if (!isRetained(store, revision)) return { kind: 'skipped', reason: 'the mirror moved past the checked revision' };
    if (this.deps.grayscale !== undefined && this.deps.grayscale.lastChange > revision && this.deps.grayscale.touches(start, page.end ?? ALL_ABOVE)) {
      return { kind: 'skipped', reason: 'grayscale keys changed after the checked revision' };
    }
    const mirrored = withWithheld(store, start, page.end, [...keyspaceAt(store, revision, start, page.end, false).scan(start, page.end)]);
    const difference = firstDifference(mirrored, page.records);
    if (difference !== null) return { kind: 'mismatch', revision, ...difference };
    return this.advance(range, page.end, page.records);
  }

  /** A page agreed: the next step starts after it, in this range or the next; after the last, the round is done. */
  private advance(range: KeyRange, pageEnd: Buffer | null, records: readonly EncodedKeyValue[]): StepResult {
    const bytes = records.reduce((sum, record) => sum + record.bytes.length, 0);
    this.roundKeys += records.length;
    this.roundBytes += bytes;
    const rangeEnd = range.end;
    const endOfRange = pageEnd === null || (rangeEnd !== null && Buffer.compare(pageEnd, rangeEnd) >= 0);
    if (!endOfRange) {
      this.from = pageEnd;
      return { kind: 'page', keys: records.length, bytes };
    }
    this.rangeIndex += 1;
    this.from = null;
    if (this.rangeIndex < this.deps.ranges.ranges.length) return { kind: 'page', keys: records.length, bytes };
    const round = { kind: 'round' as const, keys: this.roundKeys, bytes, roundBytes: this.roundBytes };
    this.restart();
    return round;
  }

  /** As many keys as the budget allows for one interval, by the mirror's average key size. */
  private pageKeys(): number {
    const stats = this.deps.store.stats();
    const recordBytes = stats.keys > 0 ? Math.max(1, Math.round(stats.bytes / stats.keys)) : DEFAULT_RECORD_BYTES;
    return Math.max(1, Math.min(LIST_PAGE_KEYS, Math.floor((this.deps.bytesPerSecond * Math.max(this.deps.intervalMs, 1000)) / 1000 / recordBytes)));
  }

  /** The whole keyspace's cheap evidence: every mirrored range's count at R, where the mirror is at R still. */
  private async countsAgree(member: UpstreamMember, revision: number): Promise<StepResult | null> {
    const { store } = this.deps;
    for (const range of this.deps.ranges.ranges) {
      const request = KeyRanges.toRequest(range);
      const answer = await callUpstream<{ count?: string }>(
        member.client,
        'etcdserverpb.KV',
        'Range',
        { ...request, revision: String(revision), count_only: true, serializable: true },
        { deadlineMs: 10_000, metadata: this.deps.identity?.metadataFor(member) ?? new Metadata(), reason: 'consistency-check' },
      );
      if (store.meta().revision !== revision) return null; // moved meanwhile: nothing to compare at R cheaply
      const mirrored = store.count(range.start, range.end) + withheldUnshown(store, range.start, range.end);
      const upstream = Number(answer.count ?? '0');
      if (mirrored !== upstream) return { kind: 'mismatch', revision, key: range.start, detail: `mirror holds ${mirrored} keys in the range, upstream ${upstream}` };
    }
    return null;
  }
}
