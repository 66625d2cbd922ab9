import type { UpstreamPool } from './pool';
import { callUpstream } from './unary';
import type { UpstreamReason } from './call-reason';
import { toRevision, type WireHeader } from '../etcd/wire';

const STATUS_TIMEOUT_MS = 2_000;

/** What every member's Status said at one moment. */
export interface MemberLook {
  /** Members asked (every member the proxy knows). */
  readonly members: number;
  /** What each member that answered told: its raft log's commit index and its store's revision. */
  readonly answers: readonly { readonly raftIndex: number; readonly revision: number }[];
}

/**
 * Asks every member its Status at once (etcd takes Status without a
 * token): where the cluster's log and store are, as far as the members
 * that answer within 2 s tell.
 */
export async function lookAtMembers(pool: UpstreamPool, reason: UpstreamReason): Promise<MemberLook> {
  const members = pool.members();
  const told = await Promise.all(
    members.map((member) =>
      callUpstream<{ header?: WireHeader; raftIndex?: string }>(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: STATUS_TIMEOUT_MS, reason }).then(
        (status) => ({ raftIndex: toRevision(status.raftIndex), revision: toRevision(status.header?.revision) }),
        () => null,
      ),
    ),
  );
  return { members: members.length, answers: told.filter((answer): answer is { raftIndex: number; revision: number } => answer !== null && answer.raftIndex > 0) };
}

/** A majority of the members answered: what they told holds for the cluster (a write is on a majority). */
export function isMajority(look: MemberLook): boolean {
  return look.answers.length * 2 > look.members;
}

/**
 * etcd's revision now: the highest a majority of members tells (a lagging
 * member tells less), or null when no majority answers.
 */
export async function clusterRevision(pool: UpstreamPool, reason: UpstreamReason): Promise<number | null> {
  const look = await lookAtMembers(pool, reason);
  return isMajority(look) ? Math.max(...look.answers.map((answer) => answer.revision)) : null;
}
