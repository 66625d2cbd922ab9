import type { Metadata } from '@grpc/grpc-js';
import type { WireHeader } from '../etcd/wire';
import { toIdentity, toRevision } from '../etcd/wire';
import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { UpstreamMember } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import type { ProgressTrust } from './range-watermark';
import { progressTrustFor } from './watch-stream';

export interface UpstreamCheck {
  /** How far the member's answers to progress requests can be believed (its version). */
  readonly trust: ProgressTrust;
  /** The mirror revision the store held before it was wiped; null when it was kept. */
  readonly discarded: number | null;
}

/** What the mirror reads the cluster's own revision with: a key its user may read, and its metadata at a member. */
export interface ClusterRevisionProbe {
  readonly key: () => Buffer;
  readonly metadata: (member: UpstreamMember) => Metadata;
}

/**
 * The cluster's revision as `member` answers a linearizable read (count
 * only, of one key): etcd answers it only once the member has applied what
 * its leader had committed, so a member cut off from its peers, or catching
 * up, does not answer it below the cluster's revision.
 */
async function clusterRevision(member: UpstreamMember, probe: ClusterRevisionProbe, deadlineMs: number): Promise<number> {
  const answer = await callUpstream<{ header?: WireHeader }>(member.client, 'etcdserverpb.KV', 'Range', { key: probe.key(), count_only: true }, { deadlineMs, metadata: probe.metadata(member), reason: 'mirror-status' });
  return toRevision(answer.header?.revision);
}

/**
 * Asks `member` for its Status before the mirror syncs from it. Data of two
 * clusters is never mixed: another cluster ID, or a revision behind the
 * mirror's (etcd restored from a backup), wipes the store, which is then
 * listed afresh. A member's Status tells the revision it has applied,
 * which a member cut off from its peers or catching up has behind the
 * cluster's: a revision behind the mirror's is believed only when a
 * linearizable read at the member says so too (one that fails fails the
 * attempt, and nothing is wiped).
 */
export async function checkUpstream(store: MirrorStore, member: UpstreamMember, log: Logger, deadlineMs: number, probe: ClusterRevisionProbe): Promise<UpstreamCheck> {
  const status = await callUpstream<{ header?: WireHeader; version?: string }>(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs, reason: 'mirror-status' });
  const trust = progressTrustFor(status.version);
  const upstream = toIdentity(status.header);
  const upstreamRevision = toRevision(status.header?.revision);
  const meta = store.meta();
  if (meta.identity !== null && meta.identity.cluster_id !== upstream.cluster_id) {
    log.warn({ mirrored: meta.identity.cluster_id, upstream: upstream.cluster_id }, 'upstream is another cluster: mirror discarded, rebuilding');
  } else if (meta.revision > upstreamRevision && meta.revision > (await clusterRevision(member, probe, deadlineMs))) {
    log.warn({ mirrorRevision: meta.revision, upstreamRevision }, 'upstream revision is behind the mirror (restored from a backup?): mirror discarded, rebuilding');
  } else {
    return { trust, discarded: null };
  }
  store.wipe();
  return { trust, discarded: meta.revision };
}
