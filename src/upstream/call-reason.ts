import type { CallOptions, Deadline, InterceptingCall, Interceptor } from '@grpc/grpc-js';

/**
 * Why the proxy made an upstream call. A fleet multiplies whatever a proxy
 * does of its own accord, so each call says which of its jobs it serves, and
 * the count by reason shows an operator what the proxy costs etcd and why.
 */
export type UpstreamReason =
  /** A client's own call, forwarded or relayed (unary, watch, lease keep-alive). */
  | 'client'
  /** The shared call that makes linearizable reads from the mirror safe. */
  | 'read-barrier'
  /** Whether etcd still holds a past revision: before the log answers it, or to find the compact revision. */
  | 'compaction-check'
  /** The mirror's watch stream. */
  | 'mirror-watch'
  /** The mirror's list of the keyspace (first sync, or after a compaction). */
  | 'mirror-list'
  /** The mirror's own checks: a member's revision, the compact revision. */
  | 'mirror-status'
  | 'consistency-check'
  /** Liveness probes, made only when there is a reason to. */
  | 'liveness'
  /** /health and /readyz asking etcd as etcd's /health asks itself. */
  | 'health'
  /** The 30 s member list refresh. */
  | 'member-refresh'
  /** Whether auth is on upstream, and whether the mirror may still read. */
  | 'auth-status'
  /** Users' and roles' permissions, for reads the mirror answers with auth on. */
  | 'auth-directory'
  /** What the mirror's own user (--user) may read, which decides the ranges the mirror holds. */
  | 'mirror-scope'
  /** The proxy's own logins with --user. */
  | 'login'
  /** The empty require-leader watch that tells when a member lost its leader. */
  | 'leader-sentinel'
  /** `snapshot save` reading a live cluster. */
  | 'snapshot'
  /** --resolver-prefix: this proxy's registration (a lease, its key, the lease's keep-alive). */
  | 'tier-registration'
  /** --resolver-prefix: the registered proxies read for MemberList, when the mirror does not hold them. */
  | 'tier-members';

/** Call options that name their reason; grpc-js hands every option on to the interceptors. */
export interface ReasonedCallOptions extends CallOptions {
  readonly reason: UpstreamReason;
}

export function reasonedCall(reason: UpstreamReason, deadline?: Deadline): ReasonedCallOptions {
  return deadline === undefined ? { reason } : { reason, deadline };
}

/**
 * Counts every upstream call by method ("KV/Range") and reason as it starts,
 * adding nothing to the call itself. A call made without a reason counts as
 * "unknown", so a call site that forgot to say shows up.
 */
export function countingInterceptor(count: (method: string, reason: UpstreamReason | 'unknown') => void): Interceptor {
  return (options, nextCall) => {
    const path = options.method_definition.path;
    count(path.slice(path.lastIndexOf('.') + 1), (options as Partial<ReasonedCallOptions>).reason ?? 'unknown');
    // Handing on the next call as it is adds no layer; grpc-js only uses what the interface declares.
    return nextCall(options) as InterceptingCall;
  };
}
