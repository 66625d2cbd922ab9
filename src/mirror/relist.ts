import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { UpstreamMember } from '../upstream/pool';
import type { AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { GrayscaleView } from '../grayscale/view';
import { listInto } from './lister';
import type { MirrorScope } from './mirror-scope';
import { RelistNeeded } from './watch-stream';

export interface RelistDeps {
  readonly store: MirrorStore;
  readonly scope: MirrorScope;
  readonly identity: UpstreamLogin;
  readonly auth: AuthGate;
  readonly log: Logger;
  /** The fastest a list of the keyspace reads from etcd; 0: as fast as it answers. */
  readonly listBytesPerSecond: number;
  readonly grayscale: GrayscaleView | null;
  /** Called after every list (what is withheld may have changed: metrics). */
  readonly onWithheld?: () => void;
  /** The store holds a fresh list at `revision`; M was `previous`. */
  readonly onListed: (revision: number, previous: number) => void;
}

/**
 * Replacing the mirror's content by a fresh list of the upstream keyspace:
 * when the store is empty, when etcd compacted past the mirror, and when
 * someone asked for it (the mirrored ranges changed, a consistency check
 * found a difference). Until the list commits, the old content is served.
 */
export class Relister {
  /** Why a list was asked for and not yet made; null: none asked. */
  private reason: string | null = null;

  constructor(private readonly deps: RelistDeps) {}

  /** Why a list is due, or null. */
  get pending(): string | null {
    return this.reason;
  }

  /** Asks for a list at the next chance, for `reason`. */
  request(reason: string): void {
    this.reason = reason;
  }

  /** Asks for a list unless one is asked for already (the first reason is the one logged). */
  requestUnlessPending(reason: string): void {
    this.reason ??= reason;
  }

  /** Lists every mirrored range from `member` into the store, as one commit. */
  async list(member: UpstreamMember, compactRevision: number): Promise<void> {
    const { store, scope, identity, log } = this.deps;
    const started = Date.now();
    const previous = store.meta().revision;
    const result = await listInto(store, member.client, scope.current, compactRevision, () => identity.metadataFor(member), this.deps.listBytesPerSecond, this.deps.grayscale);
    this.deps.onWithheld?.();
    log.info({ revision: result.revision, keys: result.keys, ms: Date.now() - started }, 'mirror listed the upstream keyspace');
    // A list went through: the upstream lets the mirror read what it holds.
    this.deps.auth.accepted();
    this.deps.onListed(result.revision, previous);
  }

  /**
   * After a sync attempt failed with `error`: lists again when etcd compacted
   * past the mirror or a list was asked for. True when it listed, false when
   * no list was due; rejects with why the list failed.
   */
  async recover(member: UpstreamMember | undefined, error: unknown): Promise<boolean> {
    const requested = this.reason;
    if ((!(error instanceof RelistNeeded) && requested === null) || member === undefined) return false;
    const { store, log } = this.deps;
    const compactRevision = error instanceof RelistNeeded ? error.compactRevision : store.meta().compactRevision;
    log.warn({ compactRevision, mirrorRevision: store.meta().revision, reason: requested ?? 'upstream compacted past the mirror' }, 're-listing');
    this.reason = null;
    try {
      await this.list(member, compactRevision);
    } catch (listError) {
      // Still due (etcd compacted past the mirror says so again by itself; a request does not).
      this.reason ??= requested;
      throw listError;
    }
    return true;
  }
}
