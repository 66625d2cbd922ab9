import type { ClusterMember } from '../support/etcd-cluster';
import { call, rawClients } from '../support/raw-client';
import type { Random } from './rng';

const STATUS_DEADLINE_MS = 2_000;
/** How long a leader move (or a partitioned member's return) may take before the fault says so and goes on. */
const SETTLE_MS = 15_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What Maintenance Status tells of a member: its own ID, and the leader it knows ('0' for none). */
export interface MemberStatus {
  readonly member: ClusterMember;
  readonly id: string;
  readonly leader: string;
}

interface WireStatus {
  readonly header?: { readonly member_id?: string };
  readonly leader?: string;
}

/** Status asked of one member; undefined when it does not answer. */
export async function statusOf(member: ClusterMember): Promise<MemberStatus | undefined> {
  if (!member.running()) return undefined;
  const clients = rawClients(member.clientAddress);
  try {
    const outcome = await call<WireStatus>(clients.maintenance, 'Status', {}, { deadlineMs: STATUS_DEADLINE_MS });
    const id = outcome.response?.header?.member_id;
    if (outcome.error !== null || id === undefined) return undefined;
    return { member, id, leader: outcome.response?.leader ?? '0' };
  } finally {
    clients.close();
  }
}

/** Every answering member's status, and the leader they agree on (undefined while they do not). */
async function survey(members: readonly ClusterMember[]): Promise<{ statuses: MemberStatus[]; leader: MemberStatus | undefined }> {
  const statuses = (await Promise.all(members.map(statusOf))).filter((status): status is MemberStatus => status !== undefined);
  const leaders = new Set(statuses.map((status) => status.leader));
  const [only] = [...leaders];
  const agreed = leaders.size === 1 && only !== '0' ? statuses.find((status) => status.id === only) : undefined;
  return { statuses, leader: agreed };
}

/** Waits until every answering member names the same leader, which answers too; undefined after `withinMs`. */
export async function agreedLeader(members: readonly ClusterMember[], withinMs = SETTLE_MS): Promise<MemberStatus | undefined> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const { leader } = await survey(members);
    if (leader !== undefined || performance.now() > deadline) return leader;
    await sleep(200);
  }
}

/**
 * Moves etcd's leadership to another member, picked by the seed: Maintenance
 * MoveLeader asked of the current leader (found by Status on each member),
 * then waits until every member names the new one. Returns what happened.
 */
export async function moveLeader(members: readonly ClusterMember[], random: Random): Promise<{ target: string; detail: string }> {
  const leader = await agreedLeader(members);
  if (leader === undefined) return { target: 'no leader', detail: `skipped: the members did not agree on a leader within ${SETTLE_MS} ms` };
  const { statuses } = await survey(members);
  const others = statuses.filter((status) => status.id !== leader.id);
  if (others.length === 0) return { target: leader.member.name, detail: 'skipped: no other member answered Status' };
  const to = random.pick(others);
  const clients = rawClients(leader.member.clientAddress);
  try {
    const outcome = await call(clients.maintenance, 'MoveLeader', { targetID: to.id }, { deadlineMs: SETTLE_MS });
    if (outcome.error !== null) return { target: `${leader.member.name} to ${to.member.name}`, detail: `MoveLeader failed: ${outcome.error.details}` };
  } finally {
    clients.close();
  }
  const after = await agreedLeader(members);
  return {
    target: `${leader.member.name} to ${to.member.name}`,
    detail: after === undefined ? `MoveLeader answered; the members did not agree on a leader within ${SETTLE_MS} ms` : `MoveLeader asked of the leader; every member now names ${after.member.name}`,
  };
}
