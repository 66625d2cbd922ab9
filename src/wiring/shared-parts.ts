import type { ChannelCredentials } from '@grpc/grpc-js';
import { AuthGate, type AuthSignal } from '../auth/auth-gate';
import { UpstreamLogin } from '../auth/upstream-login';
import { KeyRanges } from '../etcd/key-ranges';
import { GrayscaleView } from '../grayscale/view';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { MirrorScope } from '../mirror/mirror-scope';
import type { ProxyConfig } from '../settings/types';
import type { MirrorStore } from '../store/store';
import { watchUpstreamCredentials } from '../tls/upstream-tls';
import type { WatchedMaterial } from '../tls/watched-material';
import { countingInterceptor } from '../upstream/call-reason';
import { viaInterceptor } from '../upstream/loop-guard';
import { initialEndpoints } from '../upstream/membership';
import { upstreamCallCounter } from '../upstream/pool-metrics';
import { createUpstreamPool, type UpstreamPool } from '../upstream/pool';

/**
 * The parts every process builds the same way, whether it keeps the mirror
 * (one process, or the primary of --workers) or serves from it (a worker):
 * built here once, so the processes differ only in what they add.
 */
export interface SharedParts {
  readonly upstreamCredentials: WatchedMaterial<ChannelCredentials>;
  /** The members forwarded calls go to, every call counted by reason and marked with the proxy's identity. */
  readonly pool: UpstreamPool;
  /** Whether the mirror may serve, and whether it must ask who is asking. */
  readonly auth: AuthGate;
  /** The proxy's own login (--user), telling the gate what etcd said of auth. */
  readonly identity: UpstreamLogin;
  readonly grayscale: GrayscaleView;
  /** The configured mirrored ranges, narrowed later to what --user may read. */
  readonly scope: MirrorScope;
}

export interface SharedPartsOptions {
  readonly config: ProxyConfig;
  readonly store: MirrorStore;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly instanceId: string;
  /** The process that keeps the mirror writes what etcd says of its auth to the store; a worker only reads it. */
  readonly keepsMirror: boolean;
  /** The upstream side's logger (a worker's logs only what goes wrong: the primary logs member changes). */
  readonly upstreamLog?: Logger;
  /** What clients' calls teach a worker's gate, for the process that keeps the mirror. */
  readonly onAuthSignal?: (signal: AuthSignal) => void;
}

export function buildSharedParts({ config, store, log, metrics, instanceId, keepsMirror, upstreamLog = log.child({ component: 'upstream' }), onAuthSignal }: SharedPartsOptions): SharedParts {
  const upstreamCredentials = watchUpstreamCredentials(config.upstreamTls, upstreamLog);
  const pool = createUpstreamPool(initialEndpoints(config.discovery, config.endpoints, store), upstreamLog, {
    interceptors: [countingInterceptor(upstreamCallCounter(metrics)), viaInterceptor(instanceId)],
    tls: upstreamCredentials,
  });
  const mirrorLog = log.child({ component: 'mirror' });
  // Until etcd (or, in a worker, the primary) says otherwise, what etcd said of its auth last.
  const auth = new AuthGate(mirrorLog, keepsMirror ? (required) => metrics.upstreamAuthRequired.set(required ? 1 : 0) : () => undefined, config.upstreamUser !== null, onAuthSignal, {
    load: () => store.authState(),
    save: keepsMirror ? (state) => store.saveAuthState(state) : () => undefined,
  });
  if (keepsMirror) metrics.upstreamAuthRequired.set(auth.isRequired() ? 1 : 0);
  const identity = new UpstreamLogin(config.upstreamUser, mirrorLog, (enabled) => (enabled ? auth.loginSeen() : auth.loginRefusedAsDisabled()));
  const grayscale = new GrayscaleView(config.grayscale, log.child({ component: 'grayscale' }), keepsMirror ? () => metrics.grayscaleMalformedMarks.inc() : undefined);
  const scope = new MirrorScope(KeyRanges.fromPrefixes(config.mirrorPrefixes.map((prefix) => Buffer.from(prefix))));
  return { upstreamCredentials, pool, auth, identity, grayscale, scope };
}
