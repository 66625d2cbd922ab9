import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { EtcdServer } from './etcd';
import { etcdctl } from './etcdctl';
import { until } from './until';

/** `etcdctl snapshot save` of `etcd` into `file` (as `user`, "name:password", with auth on); throws with etcdctl's words on failure. */
export async function saveEtcdSnapshot(etcd: EtcdServer, file: string, user?: string): Promise<void> {
  const saved = await etcdctl(etcd.clientAddress, [...(user === undefined ? [] : [`--user=${user}`]), 'snapshot', 'save', file]);
  if (saved.code !== 0) throw new Error(`etcdctl snapshot save failed: ${saved.stderr}`);
}

/**
 * Restores a single-member etcd from `file` as an operator restores one from
 * a backup: SIGKILL, `etcdctl snapshot restore` into its data dir (same name,
 * peer URL and default cluster token: the same cluster ID), and start it
 * again on the same ports. Its revisions go back to the snapshot's.
 */
export async function restoreEtcdFromSnapshot(etcd: EtcdServer, file: string): Promise<void> {
  etcd.signal('SIGKILL');
  await until('etcd to exit', () => !etcd.running());
  const dataDir = join(etcd.dataDir, 'data');
  rmSync(dataDir, { recursive: true, force: true });
  const restored = await etcdctl(etcd.clientAddress, ['snapshot', 'restore', file, `--data-dir=${dataDir}`, `--name=${etcd.name}`, `--initial-cluster=${etcd.name}=${etcd.peerUrl}`, `--initial-advertise-peer-urls=${etcd.peerUrl}`]);
  if (restored.code !== 0) throw new Error(`etcdctl snapshot restore failed: ${restored.stderr}`);
  await etcd.restart();
}
