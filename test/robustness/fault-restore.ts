import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_PASSWORD } from '../support/etcd-auth';
import { etcdctl } from '../support/etcdctl';
import { readTail } from './etcd-tail';
import type { FaultContext } from './faults';
import type { FleetProxy } from './fleet';
import { appLogin, rootLogin } from './fleet-auth';
import { KvClient } from './kv-client';

/** How many revisions the cluster makes after the snapshot before it is restored (what the restore takes back), at most within RESTORE_GAP_MS. */
const REVISIONS_TAKEN_BACK = 40;
const RESTORE_GAP_MS = 8_000;
/** How long every proxy may take to serve the restored etcd (a marker written after it) once it serves. */
export const RESTORE_SETTLE_MS = 20_000;
/** Written straight to etcd after each restore; inside every proxy's mirror (the two-prefix proxy's too). */
const MARKER_KEY = '/service/robustness-restore';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The revision a snapshot file holds (`etcdctl snapshot status`). */
async function snapshotRevision(file: string): Promise<number> {
  const status = await etcdctl('127.0.0.1:1', ['snapshot', 'status', file, '--write-out=json']);
  const revision = Number((JSON.parse(status.stdout.trim() || '{}') as { revision?: number }).revision ?? NaN);
  if (status.code !== 0 || !Number.isSafeInteger(revision)) throw new Error(`etcdctl snapshot status failed: ${status.stderr.trim()} ${status.stdout.trim()}`);
  return revision;
}

/**
 * etcd restored from an older snapshot, as an operator restores a cluster
 * from a backup: a snapshot is saved, the cluster makes more revisions
 * (which the restore takes back), every member is stopped and restored from
 * it (`newClusterId`: with a new cluster token, so a new cluster ID; else the
 * same ID) and started. The history splits into epochs there
 * (etcd-epochs.ts; what the stopped members made last is read from their
 * data). A marker written after the restore must then reach every proxy
 * within RESTORE_SETTLE_MS: until it does, what a proxy answers may be
 * from either side of the restore (checked against both); after, only
 * from the restored etcd.
 */
export async function restoreEtcd(context: FaultContext, newClusterId: boolean): Promise<{ target: string; detail: string }> {
  const { fleet, epochs } = context;
  const dir = mkdtempSync(join(tmpdir(), 'ecp-robust-backup-'));
  try {
    const file = join(dir, 'snapshot.db');
    await fleet.cluster.saveSnapshot(file, context.login === null ? undefined : `root:${ROOT_PASSWORD}`);
    const revision = await snapshotRevision(file);
    const compactRevision = context.compacted;
    const gapUntil = performance.now() + RESTORE_GAP_MS;
    while (epochs.revision < revision + REVISIONS_TAKEN_BACK && performance.now() < gapUntil) await sleep(100);
    const takenBack = epochs.revision - revision;
    const at = performance.now();
    const logins = (): ReturnType<typeof rootLogin> | null => (context.login === null ? null : rootLogin());
    const down = { stopped: 0, read: 0 };
    await fleet.cluster.restoreFromSnapshot(file, newClusterId, async () => {
      down.stopped = performance.now();
      await epochs.endEpoch((from) => readTail(fleet.cluster.members, from, logins));
      down.read = performance.now();
    });
    const back = performance.now();
    const epoch = epochs.beginEpoch({ at, snapshotRevision: revision, compactRevision, newClusterId });
    context.compacted = compactRevision;
    const marker = await writeMarker(context, `restored at ${Math.round(at)} ms to ${revision}`);
    const late: string[] = [];
    await Promise.all(fleet.proxies.map(async (proxy) => (await servesMarker(context, proxy, marker)) || late.push(proxy.name)));
    epoch.settle(performance.now());
    for (const name of late) {
      const said = fleet.proxies.find((proxy) => proxy.name === name)?.stderr().slice(-2_000) ?? '';
      context.findings.push({ check: 'restore', message: `${name} did not serve the restored etcd (its marker at ${marker?.revision ?? '?'}) within ${RESTORE_SETTLE_MS} ms; its last words:\n${said}`, evidence: [] });
    }
    const detail = [
      `snapshot at revision ${revision} (compacted at ${compactRevision}); ${takenBack} revisions made after it taken back`,
      `every member stopped (SIGTERM) and restored ${newClusterId ? 'with a new cluster token (a new cluster ID)' : 'with the same cluster ID'}, serving again ${Math.round(back - at)} ms after the stop (stopped in ${Math.round(down.stopped - at)} ms, their last revisions read in ${Math.round(down.read - down.stopped)} ms)`,
      marker === null ? 'the marker could not be written' : `marker at ${marker.revision}; ${late.length === 0 ? `every proxy served it ${Math.round(performance.now() - at)} ms after the stop` : `not served by ${late.join(', ')}`}`,
    ];
    return { target: 'all members', detail: detail.join('; ') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Puts the marker straight to etcd (recorded, so the checker knows the write) until it is acknowledged. */
async function writeMarker(context: FaultContext, value: string): Promise<{ value: string; revision: number } | null> {
  const deadline = performance.now() + RESTORE_SETTLE_MS;
  const login = context.login === null ? null : rootLogin();
  for (let turn = 0; performance.now() < deadline; turn += 1) {
    const members = context.fleet.cluster.members;
    const address = members[turn % members.length]?.clientAddress ?? '';
    const client = new KvClient(address, login);
    try {
      if (login === null || (await login.ensure(address))) {
        const record = await context.recording.send('fault-probe', 'etcd', client, { kind: 'put', key: MARKER_KEY, value, lease: '0' });
        if (record.result.ok) return { value, revision: record.result.revision };
        login?.failed(record.result.code, record.result.message);
      }
    } finally {
      client.close();
    }
    await sleep(200);
  }
  return null;
}

/**
 * Reads the marker through `proxy` (serializable: from its mirror) until it answers it, within
 * RESTORE_SETTLE_MS; as `app` with auth on, as the traffic's clients read (root's reads may take
 * another route through the proxy than theirs).
 */
async function servesMarker(context: FaultContext, proxy: FleetProxy, marker: { value: string; revision: number } | null): Promise<boolean> {
  if (marker === null) return false;
  const deadline = performance.now() + RESTORE_SETTLE_MS;
  const login = context.login === null ? null : appLogin();
  const client = new KvClient(proxy.address, login);
  try {
    while (performance.now() < deadline) {
      if (login === null || (await login.ensure(proxy.address))) {
        const record = await context.recording.send('fault-probe', proxy.name, client, { kind: 'range', key: MARKER_KEY, rangeEnd: '', revision: 0, serializable: true, limit: 0, countOnly: false, keysOnly: false });
        if (record.result.ok && record.result.kvs?.[0]?.value === marker.value && record.result.kvs[0].modRevision === marker.revision) return true;
        if (!record.result.ok) login?.failed(record.result.code, record.result.message);
      }
      await sleep(100);
    }
    return false;
  } finally {
    client.close();
  }
}
