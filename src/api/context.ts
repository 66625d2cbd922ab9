import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { UpstreamPool } from '../upstream/pool';
import type { StreamTracker } from './stream-tracker';

/** What every gRPC service implementation is built from. */
export interface ApiContext {
  readonly pool: UpstreamPool;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Open streams, so a graceful stop can close each with a proper status. */
  readonly streams: StreamTracker;
  /** Reported as every member's client URL by Cluster.MemberList; known once the port is bound. */
  advertiseClientUrl(): string;
}
