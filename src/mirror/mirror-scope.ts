import { AuthRefused } from '../auth/auth-gate';
import type { ReadPermissions } from '../auth/permissions';
import type { UpstreamLogin } from '../auth/upstream-login';
import { readUserPermissions } from '../auth/user-permissions';
import type { Logger } from '../log';
import type { UpstreamMember } from '../upstream/pool';
import { KeyRanges, rangeName, type KeyRange } from '../etcd/key-ranges';

/** A configured range the mirror leaves to etcd, and why (for the log and /readyz). */
export interface UnmirroredRange {
  readonly range: string;
  readonly reason: string;
}

/** What the mirror holds after its user's permissions are taken into account. */
export interface ScopeDecision {
  readonly ranges: KeyRanges;
  readonly unmirrored: readonly UnmirroredRange[];
  /** Nothing at all may be mirrored: every request goes to etcd. */
  readonly empty: boolean;
}

/**
 * What the mirror may hold when etcd has auth on and the mirror reads as a
 * user of its own (`--user`), which need not be root: each configured
 * prefix the user may read whole is mirrored, each other one is left to etcd
 * and named; without configured prefixes, the mirror holds exactly the key
 * ranges the user may read (as etcd merges its roles' permissions), so a
 * proxy whose user reads /apisix/ and /other/ mirrors those two and nothing
 * in between. Each range is listed and watched on its own: etcd refuses a
 * list or watch that spans keys the user may not read.
 */
export function decideScope(configured: KeyRanges, permissions: ReadPermissions): ScopeDecision {
  const runs = permissions.readableRuns();
  if (runs === null) return { ranges: configured, unmirrored: [], empty: false };
  if (configured.whole) {
    if (runs.length === 0) return { ranges: configured, unmirrored: [{ range: rangeName(configured.ranges[0] ?? { start: Buffer.alloc(0), end: null }), reason: "the mirror's user (--user) may read no key" }], empty: true };
    return { ranges: KeyRanges.fromRanges(runs), unmirrored: [], empty: false };
  }
  const kept: KeyRange[] = [];
  const unmirrored: UnmirroredRange[] = [];
  for (const range of configured.ranges) {
    const request = KeyRanges.toRequest(range);
    if (permissions.permits(request.key, request.range_end)) kept.push(range);
    else unmirrored.push({ range: rangeName(range), reason: "the mirror's user (--user) may not read all of it: forwarded to etcd" });
  }
  if (kept.length === 0) return { ranges: configured, unmirrored, empty: true };
  return { ranges: KeyRanges.fromRanges(kept), unmirrored, empty: false };
}

/** What the serving side asks of the mirrored ranges. */
export type RangeQueries = Pick<KeyRanges, 'whole' | 'ranges' | 'contains' | 'coversRequest' | 'touches' | 'touchesWatch' | 'probeKey' | 'describe'>;

/**
 * The mirrored ranges now: what the configuration asks for until the
 * mirror's user's permissions say otherwise. Every part that asks "is this
 * key mirrored?" holds this one object, so a change reaches all of them.
 */
export class MirrorScope implements RangeQueries {
  private now: KeyRanges;
  private unmirroredNow: readonly UnmirroredRange[] = [];
  private readonly listeners = new Set<(unmirrored: readonly UnmirroredRange[]) => void>();

  constructor(readonly configured: KeyRanges) {
    this.now = configured;
  }

  /** The ranges mirrored now. */
  get current(): KeyRanges {
    return this.now;
  }

  get whole(): boolean {
    return this.now.whole;
  }

  get ranges(): readonly KeyRange[] {
    return this.now.ranges;
  }

  contains(key: Buffer): boolean {
    return this.now.contains(key);
  }

  coversRequest(key: Buffer, rangeEnd: Buffer): boolean {
    return this.now.coversRequest(key, rangeEnd);
  }

  touches(key: Buffer, rangeEnd: Buffer): boolean {
    return this.now.touches(key, rangeEnd);
  }

  touchesWatch(key: Buffer, rangeEnd: Buffer): boolean {
    return this.now.touchesWatch(key, rangeEnd);
  }

  probeKey(): Buffer {
    return this.now.probeKey();
  }

  describe(): string {
    return this.now.describe();
  }

  /** Configured ranges left to etcd, with the reason. */
  get unmirrored(): readonly UnmirroredRange[] {
    return this.unmirroredNow;
  }

  /** Told of every change of what is left to etcd (the process that keeps the mirror tells its workers). */
  onUnmirrored(listener: (unmirrored: readonly UnmirroredRange[]) => void): void {
    this.listeners.add(listener);
  }

  /** Takes a decision (or what the store holds, at start); true when the ranges changed. */
  set(ranges: KeyRanges, unmirrored: readonly UnmirroredRange[] = this.unmirroredNow): boolean {
    if (JSON.stringify(unmirrored) !== JSON.stringify(this.unmirroredNow)) {
      this.unmirroredNow = unmirrored;
      for (const listener of this.listeners) listener(unmirrored);
    }
    if (ranges.describe() === this.now.describe()) return false;
    this.now = ranges;
    return true;
  }
}

/**
 * A serving process that does not keep the mirror (--workers) takes the
 * ranges from what the store says it holds, whenever its content changes.
 */
export function followStoredScope(scope: MirrorScope, storedScope: () => string): void {
  const held = KeyRanges.parse(storedScope());
  if (held !== null) scope.set(held);
}

/**
 * Takes what the mirror's own user may read at `member` as the scope (with
 * auth off there, or no --user, the configured ranges), logging what it
 * leaves to etcd when that changes. True when the ranges changed (the mirror
 * lists again); AuthRefused when nothing configured may be mirrored.
 */
export async function followUserScope(scope: MirrorScope, login: UpstreamLogin, member: UpstreamMember, log: Logger, deadlineMs: number): Promise<boolean> {
  const user = login.userName;
  if (user === null || !login.hasTokenAt(member)) return scope.set(scope.configured, []);
  const permissions = await readUserPermissions(member.client, user, () => login.metadataFor(member), deadlineMs, 'mirror-scope');
  const decision = decideScope(scope.configured, permissions);
  const before = scope.unmirrored.map((u) => u.range).join(',');
  if (decision.empty) {
    scope.set(scope.current, decision.unmirrored);
    throw new AuthRefused(`etcdserver: permission denied (the mirror's user ${user} may read none of the mirrored keys)`);
  }
  const changed = scope.set(decision.ranges, decision.unmirrored);
  if (decision.unmirrored.map((u) => u.range).join(',') !== before || changed) {
    const message = decision.unmirrored.length > 0 ? "some mirrored ranges are left to etcd: the mirror's user may not read them" : 'the mirror follows what its user may read';
    log.warn({ user, mirrored: decision.ranges.ranges.map(rangeName), notMirrored: decision.unmirrored }, message);
  }
  return changed;
}
