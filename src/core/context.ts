import type { ProxyMode } from '../settings/types';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { LeaderSentinel } from '../upstream/leader-sentinel';
import type { UpstreamPool } from '../upstream/pool';
import type { MirrorReadDeps } from './mirror-read-deps';
import type { StreamTracker } from './stream-tracker';
import type { TierMembers } from './tier-members';
import type { WritePolicy } from './write-policy';
import type { WatchHub } from '../watch/hub';

/** What every gRPC service implementation is built from. */
export interface CoreContext {
  readonly pool: UpstreamPool;
  /** Tells when etcd ends its require-leader streams: downstream ones served here end then too. */
  readonly leader: LeaderSentinel;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Open streams, so a graceful stop can close each with a proper status. */
  readonly streams: StreamTracker;
  /** Reported as every member's client URL by Cluster.MemberList; known once the port is bound. */
  advertiseClientUrl(): string;
  /** With --resolver-prefix: MemberList answers with the proxies registered there; absent: with the cluster's members. */
  readonly tierMembers?: Pick<TierMembers, 'list'>;
  /** What every write passes before it is forwarded, and waits for after. */
  readonly writes: WritePolicy;
  /** Serving reads from the mirror; null forwards every read. */
  readonly mirrorReads: MirrorReadDeps | null;
  /** readwrite or readonly; asked per call, since a reload (SIGHUP) may change it. */
  readonly mode: () => ProxyMode;
  /** Serving watches from the mirror; null relays every watch stream upstream. */
  readonly watchHub: {
    readonly hub: WatchHub;
    readonly progressNotifyIntervalMs: number;
    readonly bufferBytes: number;
  } | null;
}
