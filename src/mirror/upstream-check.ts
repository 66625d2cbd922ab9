import { status, type Metadata } from '@grpc/grpc-js';
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
  /** The member's raft log is at this index: credentials it could not take yet (issued past it) are renewed first. */
  readonly renew: (member: UpstreamMember, raftIndex: number) => Promise<void>;
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

/** How far back the log is searched for a put to compare with etcd's history (before the current keys are). */
const LOGGED_PUTS_LOOKBACK = 64;

/**
 * The revision at which etcd's history differs from what the mirror logged,
 * or null when it does not (or cannot be told: compacted, nothing logged).
 * etcd restored from a backup with the same cluster ID, then written past
 * the mirror's revision before the mirror came back, answers above it as
 * if nothing happened; its revisions mean other writes. The mirror's newest
 * put (logged, or else its key written last), read at its own revision from
 * etcd, tells: the same history has that very key-value there.
 */
async function divergedAt(store: MirrorStore, member: UpstreamMember, probe: ClusterRevisionProbe, deadlineMs: number): Promise<number | null> {
  const logged = store.newestPut(LOGGED_PUTS_LOOKBACK);
  if (logged === null) return null;
  let answer: { kvs?: { key?: Buffer; value?: Buffer; mod_revision?: string; create_revision?: string; version?: string }[] };
  try {
    answer = await callUpstream(member.client, 'etcdserverpb.KV', 'Range', { key: logged.key, revision: logged.mod_revision }, { deadlineMs, metadata: probe.metadata(member), reason: 'mirror-status' });
  } catch (error) {
    if ((error as { code?: unknown }).code === status.OUT_OF_RANGE) {
      // etcd says "future revision" with the same code as "compacted": a linearizable read below the revision
      // the mirror logged means etcd's history went back (restored from a backup), not that it moved on.
      if (String((error as { details?: unknown }).details ?? '').includes('future revision')) return logged.mod_revision;
      // Compacted past it: nothing to compare with; the watch from M + 1 finds out whether a list is due.
      return null;
    }
    throw error;
  }
  const kv = answer.kvs?.[0];
  const same =
    kv !== undefined &&
    toRevision(kv.mod_revision) === logged.mod_revision &&
    toRevision(kv.create_revision) === logged.create_revision &&
    toRevision(kv.version) === logged.version &&
    Buffer.compare(kv.value ?? Buffer.alloc(0), logged.value) === 0;
  return same ? null : logged.mod_revision;
}

/**
 * Asks `member` for its Status before the mirror syncs from it. Data of two
 * clusters is never mixed: another cluster ID, or a revision behind the
 * mirror's (etcd restored from a backup), wipes the store, which is then
 * listed afresh. A member's Status tells the revision it has applied,
 * which a member cut off from its peers or catching up has behind the
 * cluster's: a revision behind the mirror's is believed only when a
 * linearizable read at the member says so too (one that fails fails the
 * attempt, and nothing is wiped). A revision at or past the mirror's is
 * believed only when etcd holds the mirror's newest logged put where the
 * mirror has it (divergedAt).
 */
export async function checkUpstream(store: MirrorStore, member: UpstreamMember, log: Logger, deadlineMs: number, probe: ClusterRevisionProbe): Promise<UpstreamCheck> {
  // etcd's proto names this one field in camelCase.
  const status = await callUpstream<{ header?: WireHeader; version?: string; raftIndex?: string }>(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs, reason: 'mirror-status' });
  await probe.renew(member, toRevision(status.raftIndex));
  const trust = progressTrustFor(status.version);
  const upstream = toIdentity(status.header);
  const upstreamRevision = toRevision(status.header?.revision);
  const meta = store.meta();
  if (meta.identity !== null && meta.identity.cluster_id !== upstream.cluster_id) {
    log.warn({ mirrored: meta.identity.cluster_id, upstream: upstream.cluster_id }, 'upstream is another cluster: mirror discarded, rebuilding');
  } else if (meta.revision > upstreamRevision && meta.revision > (await clusterRevision(member, probe, deadlineMs))) {
    log.warn({ mirrorRevision: meta.revision, upstreamRevision }, 'upstream revision is behind the mirror (restored from a backup?): mirror discarded, rebuilding');
  } else {
    const diverged = await divergedAt(store, member, probe, deadlineMs);
    if (diverged === null) return { trust, discarded: null };
    log.warn({ mirrorRevision: meta.revision, upstreamRevision, revision: diverged }, 'upstream holds another history than the mirror (restored from a backup, then written past it?): mirror discarded, rebuilding');
  }
  store.wipe();
  return { trust, discarded: meta.revision };
}
