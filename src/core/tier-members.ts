import type { UpstreamLogin } from '../auth/upstream-login';
import type { Logger } from '../log';
import type { Source } from '../metrics';
import { mirrorHeader } from '../mirror/response-header';
import type { MirrorStore } from '../store/store';
import type { UpstreamPool } from '../upstream/pool';
import { MAX_TIER_ENTRIES, MAX_TIER_ENTRY_BYTES, readTierEntry, registrationRange, tierMemberId, type TierEntry } from '../upstream/tier-entry';
import { callUpstream } from '../upstream/unary';

/** A read of the registrations from etcd is shared by every MemberList within this long (a fleet of clients syncing must not become a Range each). */
const UPSTREAM_READ_HOLD_MS = 1_000;
const UPSTREAM_READ_TIMEOUT_MS = 2_000;
/** Registrations are read from etcd a page at a time, so that a planted oversize value costs at most one page. */
const UPSTREAM_PAGE_KEYS = 32;
/** What one read of the registrations from etcd may bring back in all. */
const UPSTREAM_READ_MAX_BYTES = 1024 * 1024;

export interface TierMembersDeps {
  /** --resolver-prefix. */
  readonly prefix: string;
  readonly store: Pick<MirrorStore, 'scan' | 'meta'>;
  /** Whether the mirror holds a key range now (what is configured, narrowed to what --user may read). */
  readonly mirrored: (start: Buffer, end: Buffer) => boolean;
  readonly pool: UpstreamPool;
  readonly identity: Pick<UpstreamLogin, 'readyAt' | 'metadataFor' | 'observe'>;
  /** This proxy's advertised client URL: listed alone while no registration is seen, as grpc-proxy does. */
  readonly advertiseClientUrl: () => string;
  /** This machine's name, for that one entry. */
  readonly name: string;
  readonly log: Logger;
}

/** A MemberList answer as proto-loader encodes it. */
export interface TierMemberList {
  readonly header: object;
  readonly members: readonly { ID: string; name: string; clientURLs: string[] }[];
}

interface RangeAnswer {
  header?: object;
  kvs?: { key?: Buffer; value?: Buffer }[];
  more?: boolean;
}

interface UpstreamRead {
  readonly at: number;
  readonly header: object;
  readonly entries: readonly TierEntry[];
}

/**
 * Cluster.MemberList through a proxy with --resolver-prefix: the proxies
 * registered under the prefix (tier-registration.ts), each as a member with
 * its advertised URL as client URL, so clients that sync their endpoints
 * spread over the tier. grpc-proxy keeps the list from a watch of the
 * prefix; here the mirror is that watch already:
 *
 * * the prefix mirrored (the default mirrors everything): read from the
 *   store. It costs etcd nothing however many clients sync, every serving
 *   process of --workers reads the same list, an expired registration
 *   leaves with etcd's delete event, and during an outage the tier as last
 *   seen is listed (the proxies of a tier keep serving then);
 * * not mirrored (--mirror-prefix elsewhere, or --user may not read it): a
 *   serializable Range with the proxy's own identity, as grpc-proxy's first
 *   read is, shared by every MemberList within a second; when it fails, the
 *   last list read.
 *
 * Registrations are written by whoever may write under the prefix: at most
 * MAX_TIER_ENTRIES are read, and one that does not parse is skipped.
 */
export class TierMembers {
  private lastUpstream: UpstreamRead | null = null;
  private reading: Promise<UpstreamRead> | null = null;

  constructor(private readonly deps: TierMembersDeps) {}

  async list(): Promise<{ readonly answer: TierMemberList; readonly source: Source }> {
    const { start, end } = registrationRange(this.deps.prefix);
    if (this.deps.mirrored(start, end)) {
      const meta = this.deps.store.meta();
      return { answer: this.answer(mirrorHeader(meta), this.fromMirror(start, end)), source: 'mirror' };
    }
    const read = await this.fromUpstream(start, end);
    return { answer: this.answer(read.header, read.entries), source: read.at === 0 ? 'proxy' : 'upstream' };
  }

  private answer(header: object, entries: readonly TierEntry[]): TierMemberList {
    // Nothing registered yet (or nothing readable): this proxy alone, as grpc-proxy answers then.
    const listed = entries.length > 0 ? entries : [{ addr: this.deps.advertiseClientUrl(), name: this.deps.name }];
    return { header, members: listed.map((entry) => ({ ID: tierMemberId(entry.addr), name: entry.name, clientURLs: [entry.addr] })) };
  }

  private fromMirror(start: Buffer, end: Buffer): TierEntry[] {
    const entries = new Entries();
    let examined = 0;
    for (const record of this.deps.store.scan(start, end)) {
      if (++examined > MAX_TIER_ENTRIES) break;
      entries.add(record.key, record.value);
    }
    return entries.list;
  }

  private fromUpstream(start: Buffer, end: Buffer): Promise<UpstreamRead> {
    const last = this.lastUpstream;
    if (last !== null && Date.now() - last.at < UPSTREAM_READ_HOLD_MS) return Promise.resolve(last);
    this.reading ??= this.readUpstream(start, end)
      .then(
        (read) => {
          this.lastUpstream = read;
          return read;
        },
        (error: unknown) => {
          this.deps.log.debug({ err: error instanceof Error ? error.message : String(error) }, 'registered proxies not read from etcd; listing the last ones read');
          return this.lastUpstream ?? { at: 0, header: mirrorHeader(this.deps.store.meta()), entries: [] };
        },
      )
      .finally(() => {
        this.reading = null;
      });
    return this.reading;
  }

  private async readUpstream(start: Buffer, end: Buffer): Promise<UpstreamRead> {
    const { pool, identity } = this.deps;
    const failures: string[] = [];
    for (const member of pool.candidates()) {
      try {
        await identity.readyAt(member);
        const options = { deadlineMs: UPSTREAM_READ_TIMEOUT_MS, reason: 'tier-members' as const, metadata: identity.metadataFor(member) };
        const entries = new Entries();
        let header: object | undefined;
        let from = start;
        let examined = 0;
        let bytes = 0;
        for (;;) {
          const page = await callUpstream<RangeAnswer>(member.client, 'etcdserverpb.KV', 'Range', { key: from, range_end: end, limit: UPSTREAM_PAGE_KEYS, serializable: true, revision: 0 }, options);
          header ??= page.header;
          const kvs = page.kvs ?? [];
          for (const kv of kvs) {
            const key = kv.key ?? Buffer.alloc(0);
            const value = kv.value ?? Buffer.alloc(0);
            bytes += key.length + value.length;
            if (++examined <= MAX_TIER_ENTRIES) entries.add(key, value);
          }
          const lastKey = kvs.at(-1)?.key;
          if (page.more !== true || lastKey === undefined || examined >= MAX_TIER_ENTRIES || bytes >= UPSTREAM_READ_MAX_BYTES) break;
          from = Buffer.concat([lastKey, Buffer.from([0])]);
        }
        return { at: Date.now(), header: header ?? mirrorHeader(this.deps.store.meta()), entries: entries.list };
      } catch (error) {
        identity.observe(member, error);
        failures.push(`${member.endpoint.url}: ${(error as { details?: string }).details ?? String(error)}`);
      }
    }
    throw new Error(failures.length === 0 ? 'no member known' : failures.join('; '));
  }
}

/** Registrations in key order, one per address, the ones that do not parse left out. */
class Entries {
  readonly list: TierEntry[] = [];
  private readonly seen = new Set<string>();

  add(key: Buffer, value: Buffer): void {
    if (key.length > MAX_TIER_ENTRY_BYTES) return;
    const entry = readTierEntry(key, value);
    if (entry === null || this.seen.has(entry.addr)) return;
    this.seen.add(entry.addr);
    this.list.push(entry);
  }
}
