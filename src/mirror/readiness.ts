import type { StaleReads } from '../settings/types';
import type { Liveness } from '../upstream/liveness';
import type { Mirror } from './mirror';
import type { UnmirroredRange } from './mirror-scope';

/** What /readyz reports: whether a gateway pointed here gets its configuration. */
export type Readiness = (
  | { readonly ready: true; readonly state: 'synced' | 'stale' | 'forwarding'; readonly revision: number }
  | { readonly ready: false; readonly reason: string }
) & {
  /** Configured ranges the mirror leaves to etcd, and why: they are not served during an outage. */
  readonly notMirrored?: readonly UnmirroredRange[];
};

export interface ReadinessDeps {
  readonly mirror: Mirror;
  readonly liveness: Liveness;
  readonly staleReads: StaleReads;
  /** Configured ranges the mirror's user may not read. */
  readonly unmirrored?: () => readonly UnmirroredRange[];
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
  return notMirrored.length === 0 ? state : { ...state, notMirrored };
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
