// Benchmark: cold start with the upstream down. A mirror of N keys (default
// 1 000 000) is written straight into a data dir; then the proxy's CLI is
// started against an endpoint where nothing listens, and the time from
// spawning the process to the first answered read is measured.
//
//   node --import tsx bench/cold-start.ts [--keys 1000000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeKeyValue, type EncodedKeyValue } from '../src/etcd/kv-bytes';
import { openStore } from '../src/store/store';
import { freePort, sleep } from '../test/support/etcd';
import { runCli } from '../test/support/proxy';
import { stopChild } from '../test/support/etcd';
import { call, rawClients } from '../test/support/raw-client';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '1000000' } } });
const KEYS = Number(values.keys);
const PAGE = 10_000;

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-cold-'));
  try {
    const filling = Date.now();
    const store = openStore(dataDir);
    const writer = store.beginSnapshot();
    const value = Buffer.from(JSON.stringify({ uri: '/hello/*', upstream: { type: 'roundrobin', nodes: { '10.0.0.1:80': 1 } }, plugins: {} }));
    for (let start = 0; start < KEYS; start += PAGE) {
      const page: EncodedKeyValue[] = [];
      for (let i = start; i < Math.min(KEYS, start + PAGE); i += 1) {
        page.push(encodeKeyValue({ key: Buffer.from(`/apisix/routes/${String(i).padStart(8, '0')}`), value, create_revision: i + 2, mod_revision: i + 2, version: 1, lease: '0' }));
      }
      writer.putPage(page);
    }
    writer.commit(KEYS + 1, { cluster_id: '1', member_id: '2', raft_term: '2' }, 0, 'all');
    const bytes = store.stats().bytes;
    await store.close();
    const fillMs = Date.now() - filling;

    const port = await freePort();
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const spawned = Date.now();
    const child = runCli(['start', '--endpoints', nowhere, '--listen-addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-level', 'warn']);
    const clients = rawClients(`127.0.0.1:${port}`);
    let firstReadMs = NaN;
    let firstPrefixMs = NaN;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const read = await call(clients.kv, 'Range', { key: Buffer.from('/apisix/routes/00000042'), serializable: true }, { deadlineMs: 1000 });
      if (read.error === null) {
        firstReadMs = Date.now() - spawned;
        break;
      }
      await sleep(5);
    }
    const prefixStarted = Date.now();
    const prefix = await call<{ count?: string }>(clients.kv, 'Range', { key: Buffer.from('/apisix/routes/'), range_end: Buffer.from('/apisix/routes0'), count_only: true, serializable: true });
    firstPrefixMs = Date.now() - prefixStarted;
    clients.close();
    await stopChild(child);
    console.log(`mirror of ${KEYS} keys, ${(bytes / 1024 / 1024).toFixed(0)} MiB in LMDB (written in ${fillMs} ms), upstream unreachable`);
    console.log(`process spawn -> first answered read: ${firstReadMs} ms`);
    console.log(`count of all ${prefix.response?.count ?? '?'} keys under the prefix, from the mirror: ${firstPrefixMs} ms`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
