import { isServiceError } from '../etcd/errors';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';

const COMPACTED = 'etcdserver: mvcc: required revision has been compacted';
const PROBE_TIMEOUT_MS = 2_000;

/**
 * Asks the upstream whether `revision` is compacted: a count-only Range of
 * one key at that revision, which etcd refuses before doing any work when the
 * revision is below its compaction point. Serializable: the member's own
 * store knows (a member without a leader answers too), and it costs etcd no
 * ReadIndex. Undefined when no member answers.
 */
export async function isCompactedUpstream(pool: UpstreamPool, revision: number, probeKey: Buffer, identity?: UpstreamLogin): Promise<boolean | undefined> {
  for (const member of pool.candidates()) {
    try {
      await identity?.readyAt(member);
      await callUpstream(
        member.client,
        'etcdserverpb.KV',
        'Range',
        { key: probeKey, revision: String(revision), count_only: true, serializable: true },
        { deadlineMs: PROBE_TIMEOUT_MS, reason: 'compaction-check', ...(identity === undefined ? {} : { metadata: identity.metadataFor(member) }) },
      );
      return false;
    } catch (error) {
      identity?.observe(member, error);
      if (isServiceError(error) && error.details === COMPACTED) return true;
    }
  }
  return undefined;
}

/**
 * The upstream's compaction point within (known, upTo]: the lowest revision
 * that is not compacted, found by bisection in about log2(upTo - known) probes.
 */
export async function findCompactRevision(
  isCompacted: (revision: number) => Promise<boolean | undefined>,
  known: number,
  upTo: number,
): Promise<number | undefined> {
  let low = known; // compacted (or the known compaction point)
  let high = upTo; // not compacted
  if ((await isCompacted(high)) !== false) return undefined;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    const compacted = await isCompacted(middle);
    if (compacted === undefined) return undefined;
    if (compacted) low = middle;
    else high = middle;
  }
  return high;
}
