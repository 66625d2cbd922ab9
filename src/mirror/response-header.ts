import type { StoreMeta } from '../store/meta';

/** The header of an answer from the mirror: revision M and the upstream's identity. */
export function mirrorHeader(meta: StoreMeta): object {
  return {
    cluster_id: meta.identity?.cluster_id ?? '0',
    member_id: meta.identity?.member_id ?? '0',
    revision: meta.revision,
    raft_term: meta.identity?.raft_term ?? '0',
  };
}
