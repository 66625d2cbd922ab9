import { isAuthRefusal } from '../auth/auth-gate';
import { isRetained } from '../mirror/history-view';
import { ProxyError } from '../etcd/errors';
import type { MirrorReadDeps } from './mirror-read-deps';
import type { ReadSpec } from './mirror-read-spec';
import type { DecodedRead } from './request-memo';
import { FLOOR_WAIT_MS } from './revision-floor';

/** How one read is answered. */
export type Route = { kind: 'forward' } | { kind: 'mirror'; stale: boolean } | { kind: 'refuse'; error: ProxyError };
export const FORWARD: Route = { kind: 'forward' };
export const FRESH: Route = { kind: 'mirror', stale: false };
/** How long a read waits to learn etcd's revision when its process does not know it yet (RevisionFloor.unknown). */
const LEARN_WAIT_MS = 1_000;
/**
 * What a read waits for before its route is known: etcd's current revision
 * (for a linearizable read, or, `upstream`, to learn the floor), whether etcd
 * still holds a past one, or the mirror reaching a revision this process
 * already handed out.
 */
export type Wait = 'barrier' | 'upstream' | 'history' | 'floor';

/**
 * Where a read goes, from the request and the proxy's state: to etcd, to
 * the mirror (fresh or marked stale), or refused; or what it must wait for
 * before that is known.
 */
export class ReadRoutes<Req> {
  constructor(
    private readonly deps: MirrorReadDeps,
    private readonly spec: ReadSpec<Req>,
  ) {}

  /** What the mirror may give when it cannot vouch for being current: a stale answer, or a refusal (--stale-reads=deny). */
  stale(): Route {
    return this.deps.staleReads === 'deny' ? { kind: 'refuse', error: new ProxyError('staleDenied') } : { kind: 'mirror', stale: true };
  }

  /** May name a key under a grayscale prefix (settings change on reload: not kept with the decoded request). */
  isGrayscale(decoded: DecodedRead<Req>): boolean {
    return this.deps.grayscale.enabled && this.spec.grayscale(decoded.request);
  }

  /** Where a read goes that the mirror does not answer: etcd, except under a grayscale prefix. */
  upstream(decoded: DecodedRead<Req>, stale = false): Route {
    return this.isGrayscale(decoded) ? this.keptLocal(decoded, stale) : FORWARD;
  }

  /** The route decided from the request and the proxy's state alone, or what it must wait for first. */
  now(decoded: DecodedRead<Req>): Route | Wait {
    const { deps, spec } = this;
    // Auth that the mirror cannot serve leaves every decision, and every answer, to etcd.
    // Whether the mirror holds the keys is asked each time: what it holds follows its user's permissions.
    if (!decoded.read || !spec.covered(decoded.request) || deps.mirror.authRequired()) return FORWARD;
    const lost = deps.liveness.isLost();
    const refusal = decoded.refusal;
    if (refusal !== null) return lost ? { kind: 'refuse', error: new ProxyError(refusal) } : FORWARD;
    if (!deps.mirror.hasData()) return lost ? { kind: 'refuse', error: new ProxyError('neverSynced') } : this.upstream(decoded);
    // etcd went back below what the mirror holds (restored from a backup) and the mirror has not been
    // listed again yet: its keys are of a history etcd no longer has.
    if (deps.floor.mirrorOfAnotherHistory) return lost ? this.stale() : this.upstream(decoded);
    if (decoded.revision !== 0) return this.pastRevision(decoded, lost);
    if (lost) return this.stale();
    if (decoded.serializable) return this.fresh();
    // A prefix mirror's revision moves only with its own keys' events, so it may never reach
    // the upstream's; without progress responses it can trust, such reads go upstream.
    // This machine's view has no upstream to be linearizable with: it answers as it stands.
    if (!deps.ranges.whole) return this.upstream(decoded);
    return 'barrier';
  }

  /** A read of a past revision the log holds: the log's answer unless etcd has compacted it, which etcd then says itself. */
  async afterCompactionCheck(decoded: DecodedRead<Req>): Promise<Route> {
    const mayBeCompacted = await this.deps.compaction.mayBeCompacted(decoded.revision);
    if (mayBeCompacted === true) return FORWARD;
    return mayBeCompacted === undefined ? this.stale() : this.afterFloor(decoded);
  }

  /**
   * The mirror's answer while etcd answers, unless this process already handed out a newer revision than M,
   * or does not know yet what was handed out before it started (or before the mirror took a snapshot).
   */
  private fresh(): Route | Wait {
    if (this.deps.floor.unknown) return 'upstream';
    return this.deps.store.meta().revision >= this.deps.floor.revision ? FRESH : 'floor';
  }

  /**
   * Learns etcd's current revision (the read barrier's call, shared with linearizable reads) as the floor,
   * then waits for the mirror to reach it as afterFloor does. Marked stale when etcd cannot tell it within
   * LEARN_WAIT_MS (a serializable read does not wait out members that hang); a late answer still sets the floor.
   */
  async afterUpstream(decoded: DecodedRead<Req>): Promise<Route> {
    const learned = this.deps.barrier.upstreamRevision().then((revision) => this.deps.floor.noteUpstream(revision));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), LEARN_WAIT_MS)));
    try {
      if ((await Promise.race([learned, late])) === 'late') {
        learned.catch(() => undefined);
        return this.stale();
      }
    } catch (error) {
      // Auth went on upstream: from now on etcd decides, with the client's own token.
      if (isAuthRefusal(error)) {
        this.deps.auth.refused();
        return FORWARD;
      }
      return this.stale();
    } finally {
      clearTimeout(timer);
    }
    return this.afterFloor(decoded);
  }

  /** Waits (briefly) for the mirror to reach the floor; etcd answers what it does not reach in time. */
  async afterFloor(decoded: DecodedRead<Req>): Promise<Route> {
    const floor = this.deps.floor.revision;
    if (this.deps.store.meta().revision >= floor || (await this.deps.mirror.waitForRevision(floor, FLOOR_WAIT_MS))) return FRESH;
    return this.deps.liveness.isLost() ? this.stale() : this.upstream(decoded);
  }

  /** A read at a revision other than the current one. */
  private pastRevision(decoded: DecodedRead<Req>, lost: boolean): Route | Wait {
    const { deps } = this;
    const revision = decoded.revision;
    // The keyspace at a past revision never changes: the log answers it without a barrier.
    if (isRetained(deps.store, revision)) {
      if (lost) return this.stale();
      // etcd may have compacted past it since the proxy last heard; the current revision it cannot have.
      return revision < deps.store.meta().revision ? 'history' : this.fresh();
    }
    if (!lost) return this.upstream(decoded);
    return { kind: 'refuse', error: new ProxyError(revision > deps.mirror.revision() ? 'futureRevision' : 'compacted') };
  }

  /**
   * What a read under a grayscale prefix gets where others go to etcd: etcd
   * holds versions this machine withholds, so the mirror answers (marked stale
   * when it cannot vouch for being current), or etcd's error for what the
   * view cannot tell.
   */
  private keptLocal(decoded: DecodedRead<Req>, stale: boolean): Route {
    const { deps } = this;
    if (!deps.mirror.hasData()) return { kind: 'refuse', error: new ProxyError('grayscaleUnsynced') };
    const revision = decoded.revision;
    if (revision !== 0 && !isRetained(deps.store, revision)) {
      return { kind: 'refuse', error: new ProxyError(revision > deps.mirror.revision() ? 'futureRevision' : 'compacted') };
    }
    return stale ? this.stale() : FRESH;
  }
}
