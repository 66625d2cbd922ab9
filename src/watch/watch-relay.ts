import { Metadata } from '@grpc/grpc-js';
import type { UpstreamPool } from '../upstream/pool';
import { RelayStream } from './relay-stream';
import { RelayLink } from './relay-link';
import { SharedWatch, type RelayHandle, type RelayMember } from './shared-watch';
import type { WatchSpec, WireWatchCreateRequest } from './watch-spec';

/**
 * Which upstream stream a relayed watch may ride: etcd ends a require-leader
 * (`hasleader`) stream when its member loses the leader, and must not end
 * plain watches with it; and with auth on, etcd decides what a watch may see
 * by the token of its stream, so a client's token rides only with its own
 * watches (never shared with another client's). No other request metadata
 * changes what etcd does with a watch, so a stream shared by many clients
 * carries none of theirs (trace IDs and the like are one client's).
 */
export interface RelayKind {
  readonly requireLeader: boolean;
  /** The client's auth token, if it sent one. */
  readonly token: string | undefined;
  /** Both, as one map key. */
  readonly key: string;
}

export function relayKind(upstreamMetadata: Metadata): RelayKind {
  const requireLeader = upstreamMetadata.get('hasleader')[0] === 'true';
  const sent = upstreamMetadata.get('token')[0] ?? upstreamMetadata.get('authorization')[0];
  const token = sent === undefined ? undefined : String(sent);
  return { requireLeader, token, key: `${requireLeader ? 'require-leader' : 'plain'}${token === undefined ? '' : `/${token}`}` };
}

function metadataOf(kind: RelayKind): Metadata {
  const metadata = new Metadata();
  if (kind.requireLeader) metadata.set('hasleader', 'true');
  if (kind.token !== undefined) metadata.set('token', kind.token);
  return metadata;
}

/** Two watches with the same identity get the same events from etcd, message for message. */
function relayShareKey(kind: RelayKind, spec: WatchSpec): string {
  const range = spec.single ? '=' : spec.end === null ? '+' : spec.end.toString('hex');
  const flags = [spec.noPut, spec.noDelete, spec.prevKv, spec.progressNotify, spec.fragment].map((flag) => (flag ? '1' : '0')).join('');
  return `${kind.key}/${spec.key.toString('hex')}/${range}/${flags}`;
}

export interface RelayMetrics {
  /** Upstream watch streams opened (+1) and closed (-1). */
  streams(delta: number): void;
  /** Upstream watches held for relayed downstream watches. */
  watches(delta: number): void;
}

const NO_MEMBER = 'etcd-cache-proxy: no upstream member for a watch the mirror cannot serve';
const DETACHED: RelayHandle = { cancel: () => undefined, through: () => -1, caughtUp: () => null, askProgress: () => undefined };

/**
 * Watches the mirror cannot serve, relayed to etcd for the whole process:
 * identical ones, from any downstream stream, share one upstream watch when
 * their start revisions allow (SharedWatch says when). Upstream watches of
 * one kind are multiplexed on one stream, as etcd's own clients do: each
 * stream costs etcd a gRPC stream and its goroutines, and the relay reads
 * every response at once (sessions buffer for their clients), so one slow
 * client never holds up the others' watches on it. A stream's failure
 * reaches all its watches at once; each is created again on a new stream
 * (RelayLink), as etcd's own client would, so its clients see nothing of it.
 */
export class WatchRelay {
  private readonly streams = new Map<string, RelayStream>();
  private readonly shared = new Map<string, Set<SharedWatch>>();
  /** The highest revision seen in any upstream watch response (or the mirror): one the cluster has reached. */
  private latest = 0;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly mirrorRevision: () => number,
    private readonly metrics: RelayMetrics,
    /** Whether a client's token is of a raft log etcd no longer has (restored from a backup): etcd holds a watch created with it. */
    private readonly tokenOfAnotherLog: (token: string) => Promise<boolean> = () => Promise.resolve(false),
  ) {}

  /**
   * Relays one downstream watch. Its answers reach `member`, possibly before
   * this returns (a watch joining one etcd already answered is answered at once).
   */
  watch(kind: RelayKind, spec: WatchSpec, request: WireWatchCreateRequest, member: RelayMember): RelayHandle {
    const identity = relayShareKey(kind, spec);
    for (const candidate of this.shared.get(identity) ?? []) {
      const joined = candidate.join(spec.startRevision, member);
      if (joined !== null) return joined;
    }
    let link: RelayLink | null = null;
    const watch = new SharedWatch(
      spec.startRevision,
      spec.fragment,
      () => this.knownRevision(),
      () => {
        // Ended by its members leaving, by etcd, by a failure or by a discard: nothing is to be created again.
        link?.close();
        this.forget(identity, watch);
      },
      () => link?.askProgress(),
    );
    const token = kind.token;
    link = new RelayLink(watch, request, () => this.stream(kind), token === undefined ? null : () => this.tokenOfAnotherLog(token));
    if (!link.open()) {
      member.broken(NO_MEMBER);
      return DETACHED;
    }
    const group = this.shared.get(identity) ?? new Set<SharedWatch>();
    group.add(watch);
    this.shared.set(identity, group);
    this.metrics.watches(1);
    // A new watch takes any member asking for its own start, so this join cannot fail.
    return watch.join(spec.startRevision, member) ?? DETACHED;
  }

  /**
   * The mirror was discarded (etcd restored from a backup, or another
   * cluster): revisions seen before mean nothing now, and every relayed
   * watch ends as compacted at `compactRevision`, as the mirror's own
   * watches do. Resumed on the restored etcd, it would go on from a
   * revision of the history it started on with events of another.
   */
  discard(compactRevision: number): void {
    this.latest = 0;
    for (const group of [...this.shared.values()]) {
      for (const watch of [...group]) watch.received({ watch_id: '0', canceled: true, compact_revision: String(compactRevision) });
    }
  }

  private knownRevision(): number {
    this.latest = Math.max(this.latest, this.mirrorRevision());
    return this.latest;
  }

  private forget(identity: string, watch: SharedWatch): void {
    const group = this.shared.get(identity);
    if (group?.delete(watch) !== true) return;
    if (group.size === 0) this.shared.delete(identity);
    this.metrics.watches(-1);
  }

  private stream(kind: RelayKind): RelayStream | null {
    const open = this.streams.get(kind.key);
    if (open !== undefined) return open;
    const upstream = this.pool.candidates()[0];
    if (upstream === undefined) return null;
    const stream = RelayStream.open(upstream, metadataOf(kind), {
      seen: (revision) => {
        this.latest = Math.max(this.latest, revision);
      },
      closed: () => {
        if (this.streams.get(kind.key) === stream) this.streams.delete(kind.key);
      },
      count: (delta) => this.metrics.streams(delta),
    });
    this.streams.set(kind.key, stream);
    return stream;
  }
}
