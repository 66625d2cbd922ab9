import type { UnmirroredRange } from '../mirror/mirror-scope';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { HostPort } from '../etcd/endpoint';
import type { UpstreamKind } from '../upstream/upstream-kind';
import type { AuthSignal, AuthState } from '../auth/auth-gate';
import type { SharedToken } from '../auth/directory';
import type { LoginAttempt } from '../auth/login-limits';

/**
 * The messages between the process that keeps the mirror (the primary) and
 * the serving processes (workers), over Node's cluster IPC channel. Every
 * type starts with `ecp:` so nothing else on the channel is taken for one.
 */

/** What changed in the mirror; a worker reads the rest from the store. */
export type MirrorNotice =
  /** M moved: the events up to `revision` are in the log. */
  | { readonly kind: 'revision'; readonly revision: number }
  | { readonly kind: 'relisted' | 'adopted'; readonly revision: number; readonly previous: number }
  | { readonly kind: 'discarded'; readonly previous: number }
  /** This machine's grayscale view changed in place; watchers of these prefixes (old and new settings) are cancelled. */
  | { readonly kind: 'rederived'; readonly revision: number; readonly prefixes: readonly string[] };

export type ToWorker =
  | { readonly type: 'ecp:mirror'; readonly notice: MirrorNotice }
  | { readonly type: 'ecp:liveness'; readonly lost: boolean; readonly silent: boolean; readonly answered: boolean }
  | { readonly type: 'ecp:auth'; readonly state: AuthState }
  /** Configured ranges the mirror leaves to etcd (its user may not read them), for /readyz. */
  | { readonly type: 'ecp:scope'; readonly unmirrored: readonly UnmirroredRange[] }
  /** The upstream members (client URLs) and their health as the primary's probes found it. */
  | { readonly type: 'ecp:members'; readonly members: readonly { readonly url: string; readonly healthy: boolean | null; readonly kind: UpstreamKind }[] }
  /** Whether the upstream tier answers stale (since when, epoch ms), as a serving process last learned it. */
  | { readonly type: 'ecp:tier'; readonly staleSince: number | null }
  /** Read flags, environment and file again (the primary got SIGHUP or saw the file change). */
  | { readonly type: 'ecp:reload' }
  /** Send this process's metrics, for the sum /metrics answers. */
  | { readonly type: 'ecp:metrics-collect'; readonly id: number }
  /** The summed metrics a worker asked for. */
  | { readonly type: 'ecp:metrics'; readonly id: number; readonly text: string }
  /** A client connection (sent with the message as its handle), accepted by the primary and not yet read from. */
  | { readonly type: 'ecp:connection'; readonly id: number }
  /** A token another worker learned (its clients may read on a connection this worker holds). */
  | { readonly type: 'ecp:token'; readonly token: SharedToken }
  /** etcd no longer takes this token (another worker found out): forget it. */
  | { readonly type: 'ecp:token-forget'; readonly token: string }
  /** etcd's auth store has reached at least this revision: JWTs issued before it are refused. */
  | { readonly type: 'ecp:auth-revision'; readonly atLeast: number }
  /** The answer to a worker's `ecp:login-reserve`: the reservation's instant, or null when a budget is spent. */
  | { readonly type: 'ecp:login-reserved'; readonly id: number; readonly at: number | null };

export type ToPrimary =
  /** The worker listens to the channel now: the primary sends it the state of things. */
  | { readonly type: 'ecp:hello' }
  /** A client waits for the mirror (read your writes): reconnect now rather than at the jittered moment. */
  | { readonly type: 'ecp:hurry' }
  | { readonly type: 'ecp:relist'; readonly reason: string }
  | { readonly type: 'ecp:compaction' }
  /** This worker's calls found the upstream tier stale (since then), or fresh (null): every process follows. */
  | { readonly type: 'ecp:tier'; readonly staleSince: number | null }
  /** A compaction to `revision` went through this worker: the store records it. */
  | { readonly type: 'ecp:compacted'; readonly revision: number }
  | { readonly type: 'ecp:auth-signal'; readonly signal: AuthSignal }
  /** The worker bound the client port (discovery's loop guard needs the address). */
  | { readonly type: 'ecp:listening'; readonly address: HostPort; readonly advertiseClientUrl: string }
  /** A worker was asked GET /metrics: the sum over every process, please. */
  | { readonly type: 'ecp:metrics-request'; readonly id: number }
  | { readonly type: 'ecp:metrics-json'; readonly id: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  /** The worker holds connection `id` now: the primary closes its own copy. */
  | { readonly type: 'ecp:took'; readonly id: number }
  /** A connection handed to this worker ended (the primary balances by connections open). */
  | { readonly type: 'ecp:connection-closed' }
  /** This worker learned a token's user: the others should know it. */
  | { readonly type: 'ecp:token'; readonly token: SharedToken }
  /** etcd no longer takes this token: every worker forgets it, and a worker started later never hears of it. */
  | { readonly type: 'ecp:token-forget'; readonly token: string }
  | { readonly type: 'ecp:auth-revision'; readonly atLeast: number }
  /** An offline login is about to be checked: reserve it in the budgets every worker shares (the answer: `ecp:login-reserved`). */
  | { readonly type: 'ecp:login-reserve'; readonly id: number; readonly attempt: LoginAttempt }
  /** That login succeeded: its reservation goes back. */
  | { readonly type: 'ecp:login-give-back'; readonly attempt: LoginAttempt; readonly at: number };

/** True for this proxy's messages (the channel is Node's: it carries others too). */
function isOurs(message: unknown): boolean {
  return typeof message === 'object' && message !== null && typeof (message as { type?: unknown }).type === 'string' && (message as { type: string }).type.startsWith('ecp:');
}

export function isToWorker(message: unknown): message is ToWorker {
  return isOurs(message);
}

export function isToPrimary(message: unknown): message is ToPrimary {
  return isOurs(message);
}

/** The environment variable that hands workers the proxy's loop-guard identity (one for the whole proxy). */
export const INSTANCE_ID_ENV = 'ETCD_CACHE_PROXY_INSTANCE_ID';
/** The environment variable that tells workers the port the primary bound for clients (the flag may say 0). */
export const CLIENT_PORT_ENV = 'ETCD_CACHE_PROXY_CLIENT_PORT';
