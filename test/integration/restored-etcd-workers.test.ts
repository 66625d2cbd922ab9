// Integration (real etcd restored from a snapshot, the CLI with --workers 2): while the mirror's writer
// discards what it mirrored and lists the restored etcd, a serving process that has not heard so yet
// reads a store that went back. It answered from what it had kept, under the wiped store's header
// (revision 0, with keys of before): found by the robustness run's restore fault. Reads now hammer the
// workers across three restores and every answer must be one side's whole keyspace at a real revision.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { restoreEtcdFromSnapshot, saveEtcdSnapshot } from '../support/etcd-restore';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

interface RangeAnswer {
  readonly header?: { readonly revision?: string };
  readonly kvs?: readonly { readonly key: Buffer; readonly value: Buffer; readonly mod_revision?: string }[];
}

/** What one read through the proxy answered. */
interface Seen {
  readonly revision: number;
  readonly values: ReadonlyMap<string, string>;
}

async function put(clients: RawClients, key: string, value: string): Promise<number> {
  const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b(key), value: b(value) }, { deadlineMs: 5_000 });
  assert.equal(outcome.error, null, outcome.error?.details);
  return Number(outcome.response?.header?.revision ?? 0);
}

describe('etcd restored under a --workers proxy', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-workers-'));

  before(async () => {
    etcd = await startEtcd();
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--consistency-check-interval', '0', '--upstream-timeout', '2s']);
  });

  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('every answer across a restore is one side of it, at a revision etcd made, never a kept answer under a wiped header', async () => {
    let direct = rawClients(etcd.clientAddress);
    const readers = Array.from({ length: 6 }, () => rawClients(proxy.address));
    const seen: Seen[] = [];
    let reading = true;
    const readLoop = async (clients: RawClients): Promise<void> => {
      while (reading) {
        const outcome = await call<RangeAnswer>(clients.kv, 'Range', { key: b('/k/'), range_end: b('/k0'), serializable: true }, { deadlineMs: 5_000 });
        if (outcome.error !== null) continue;
        const values = new Map((outcome.response?.kvs ?? []).map((kv) => [kv.key.toString(), kv.value.toString()]));
        seen.push({ revision: Number(outcome.response?.header?.revision ?? 0), values });
      }
    };
    try {
      for (let i = 0; i < 5; i += 1) await put(direct, `/k/${i}`, 'kept');
      const loops = readers.map(readLoop);
      for (let round = 1; round <= 3; round += 1) {
        const snapshot = join(work, `snapshot-${round}.db`);
        await saveEtcdSnapshot(etcd, snapshot);
        let lost = 0;
        for (let i = 0; i < 20; i += 1) lost = await put(direct, '/k/lost', `lost-${round}-${i}`);
        await until('the proxy to serve what the restore will take back', () => seen.at(-1)?.values.get('/k/lost') === `lost-${round}-19`, 20_000, 20);
        await restoreEtcdFromSnapshot(etcd, snapshot);
        direct.close();
        direct = rawClients(etcd.clientAddress);
        const marker = await put(direct, '/k/marker', `restored-${round}`);
        assert.ok(marker < lost, 'the restored etcd is behind the mirror');
        await until('every worker to serve the restored etcd', () => seen.slice(-12).every((answer) => answer.values.get('/k/marker') === `restored-${round}`), 30_000, 20);
      }
      reading = false;
      await Promise.all(loops);
    } finally {
      reading = false;
      direct.close();
      for (const clients of readers) clients.close();
    }
    assert.ok(seen.length > 100, `only ${seen.length} reads were answered`);
    const wrong = seen.filter((answer) => answer.revision <= 1 || (answer.values.has('/k/lost') && answer.values.has('/k/marker') && answer.values.get('/k/marker') === `restored-${answer.values.get('/k/lost')?.split('-')[1] ?? ''}`));
    assert.deepEqual(
      wrong.slice(0, 5).map((answer) => ({ revision: answer.revision, values: Object.fromEntries(answer.values) })),
      [],
      `${wrong.length} of ${seen.length} answers were neither side of a restore (a header below 2, or a restore's marker beside what it took back)`,
    );
  });
});
