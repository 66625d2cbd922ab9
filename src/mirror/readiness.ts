import type { StaleReads } from '../settings/types';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamPool } from '../upstream/pool';
import type { TierStaleness } from '../upstream/tier-stale';
import type { Mirror } from './mirror';
import type { UnmirroredRange } from './mirror-scope';

/** What /readyz reports: whether a gateway pointed here gets its configuration. */
export type Readiness = (
  | { readonly ready: true; readonly state: 'synced' | 'stale' | 'forwarding'; readonly revision: number }
  | { readonly ready: false; readonly reason: string }
) & {
  /** Configured ranges the mirror leaves to etcd, and why: they are not served during an outage. */
  readonly notMirrored?: readonly UnmirroredRange[];
  /** What this proxy's upstream is, and for a tier whether it serves stale and how far behind this proxy is. */
  readonly upstream?: UpstreamReport;
};

/**
 * `etcd` when the members answer as etcd, `tier` when they are other
 * etcd-cache-proxies (their answers say so), `unknown` before any answered.
 * For a tier: whether it answers marked stale (cut off from etcd) and since
 * how long; `revision` the newest revision this proxy has heard of through
 * it (the highest answer's revision: the revision floor), and `behind` how many revisions the mirror here lacks of that.
 */
export type UpstreamReport =
  | { readonly kind: 'etcd' | 'unknown' }
  | { readonly kind: 'tier'; readonly stale: boolean; readonly staleForMs?: number; readonly revision: number; readonly behind: number };

export interface ReadinessDeps {
  readonly mirror: Mirror;
  readonly liveness: Liveness;
  readonly staleReads: StaleReads;
  /** Configured ranges the mirror's user may not read. */
  readonly unmirrored?: () => readonly UnmirroredRange[];
  readonly upstream?: () => UpstreamReport;
}

/**
 * Ready means reads are answered: from a mirror that has a complete copy
 * (synced while the upstream answers; stale while it is lost, or has not
 * answered since start, and stale reads are allowed), or, with the mirror
 * off for want of credentials, by a reachable upstream. A proxy still making its first copy is not ready even
 * though it forwards meanwhile: an orchestrator should not count on it before
 * it can survive an outage.
 */
export function readiness(deps: ReadinessDeps): Readiness {
  const state = readinessState(deps);
  const notMirrored = deps.unmirrored?.() ?? [];
  const upstream = deps.upstream?.();
  return { ...state, ...(notMirrored.length === 0 ? {} : { notMirrored }), ...(upstream === undefined ? {} : { upstream }) };
}

/**
 * What the upstream is, from what its members' answers said (a tier as soon
 * as one member is a proxy: the members of one --endpoints list are one tier).
 * The status code and state of /readyz do not change with it: a stale tier
 * still answers reads, and this proxy's own liveness says when it is lost.
 */
export function upstreamReport(pool: UpstreamPool, tier: TierStaleness, floor: { readonly revision: number }, mirror: Mirror): UpstreamReport {
  const kinds = pool.members().map((member) => pool.kind(member));
  if (!kinds.includes('proxy')) return { kind: kinds.includes('etcd') ? 'etcd' : 'unknown' };
  const since = tier.staleSince();
  const held = mirror.revision();
  const heard = Math.max(held, floor.revision);
  return {
    kind: 'tier',
    stale: since !== null,
    ...(since === null ? {} : { staleForMs: Math.max(0, Date.now() - since) }),
    revision: heard,
    behind: heard - held,
  };
}

function readinessState({ mirror, liveness, staleReads }: ReadinessDeps): Readiness {
  const lost = liveness.isLost();
  if (mirror.authRequired()) {
    if (lost) return { ready: false, reason: 'upstream lost and the mirror is off (the upstream requires authentication)' };
    // Forwarding needs an upstream that answers: a proxy started during an outage has none yet.
    if (!liveness.hasAnswered()) return { ready: false, reason: 'no member has answered since start, and the mirror is off (the upstream requires authentication)' };
    return { ready: true, state: 'forwarding', revision: 0 };
  }
  if (!mirror.hasData()) return { ready: false, reason: lost ? 'upstream lost before the mirror ever synced' : 'mirror not synced yet' };
  // Synced needs an answer since this process started: a proxy started during an outage serves its copy
  // stale-marked before the upstream timeout has passed, and says so here too.
  if (!lost && liveness.hasAnswered()) return { ready: true, state: 'synced', revision: mirror.revision() };
  if (staleReads === 'deny') return { ready: false, reason: lost ? 'upstream lost and --stale-reads=deny' : 'no member has answered since start, and --stale-reads=deny' };
  return { ready: true, state: 'stale', revision: mirror.revision() };
}
