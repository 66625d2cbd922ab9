import { encodeResponseHeader } from '../etcd/response-bytes';
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

/** The same header encoded, at `revision` (a watch batch's) or M: answers made of stored bytes start with it. */
export function mirrorHeaderBytes(meta: StoreMeta, revision = meta.revision): Buffer {
  return encodeResponseHeader(meta.identity, revision);
}
