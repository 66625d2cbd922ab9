import type { StaleReads } from '../settings/types';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import type { AuthGate } from '../auth/auth-gate';
import type { AuthDirectory } from '../auth/directory';
import type { OfflineLogins } from '../auth/offline-logins';
import type { CompactionCheck } from '../mirror/compaction-check';
import type { ReadBarrier } from '../mirror/read-barrier';
import type { TierStaleness } from '../upstream/tier-stale';
import type { RangeQueries } from '../mirror/mirror-scope';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { ResponseCache } from './response-cache';
import type { GrayscaleView } from '../grayscale/view';
import type { RevisionFloor } from './revision-floor';

/**
 * What serving reads from the mirror needs: its own file, so that the core's
 * context can name it without importing the reads (which import the context).
 */
export interface MirrorReadDeps {
  readonly store: MirrorStore;
  readonly mirror: Mirror;
  readonly ranges: RangeQueries;
  readonly liveness: Liveness;
  readonly barrier: ReadBarrier;
  /** Whether the upstream tier answers stale: every answer of this proxy is then marked stale too. */
  readonly tierStale: TierStaleness;
  /** Asks etcd whether a past revision the log holds is still etcd's (a compaction made elsewhere). */
  readonly compaction: CompactionCheck;
  /** With auth on: who is asking, and what they may read. */
  readonly directory: AuthDirectory;
  /** Logins the proxy may answer while etcd is down (--auth-offline-login); null: none. */
  readonly offlineLogins: OfflineLogins | null;
  /** Told when the barrier's anonymous read is refused: auth went on upstream. */
  readonly auth: AuthGate;
  readonly staleReads: StaleReads;
  /** Encoded answers of repeated reads, shared by every read kind. */
  readonly cache: ResponseCache;
  /** This machine's view under grayscale prefixes: reads there are never sent to etcd (null: off). */
  readonly grayscale: GrayscaleView;
  /** The highest revision this process forwarded to a client: the mirror answers no lower while etcd answers. */
  readonly floor: RevisionFloor;
  readonly metrics: Metrics;
  readonly log: Logger;
}
