// Benchmark (in process, no etcd): a whole-prefix Range answered from the
// store. A mirror of --keys keys (default 10 000) of about --value-bytes
// (900) each is written into a temporary data dir; then the answer a mirror
// Range gives (store scan + encoded RangeResponse, what src/core/mirror-reads.ts
// does per request) is built --rounds times and timed. Also the same with
// keys_only.
//
//   node --import tsx bench/range-answer.ts [--keys 10000] [--value-bytes 900] [--rounds 50]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeKeyValue, type EncodedKeyValue } from '../src/etcd/kv-bytes';
import { encodeRangeResponse } from '../src/etcd/response-bytes';
import { mirrorHeaderBytes } from '../src/mirror/response-header';
import { evaluateRange, type WireRangeRequest } from '../src/mirror/range-query';
import { openStore, type MirrorStore } from '../src/store/store';

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '10000' }, 'value-bytes': { type: 'string', default: '900' }, rounds: { type: 'string', default: '50' } },
});
const KEYS = Number(values.keys);
const VALUE_BYTES = Number(values['value-bytes']);
const ROUNDS = Number(values.rounds);

/** What mirror-reads answers for one Range, as bytes. */
function answer(store: MirrorStore, request: WireRangeRequest): Buffer {
  const meta = store.meta();
  const result = evaluateRange(store, request);
  return encodeRangeResponse(mirrorHeaderBytes(meta), result.kvs, result.more, result.count, result.keysOnly);
}

function fill(store: MirrorStore): void {
  const writer = store.beginSnapshot();
  const page: EncodedKeyValue[] = [];
  for (let i = 0; i < KEYS; i += 1) {
    const value = Buffer.alloc(VALUE_BYTES, `{"uri":"/route/${i}","upstream":{"nodes":{"10.0.0.1:80":1}}}`);
    page.push(encodeKeyValue({ key: Buffer.from(`/apisix/routes/${String(i).padStart(8, '0')}`), value, create_revision: i + 2, mod_revision: i + 2, version: 1, lease: '0' }));
  }
  writer.putPage(page);
  writer.commit(KEYS + 1, { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '2' }, 0, 'all');
}

/** The store's part alone: the keys the answer is made of. */
function scan(store: MirrorStore, request: WireRangeRequest): number {
  return evaluateRange(store, request).kvs.length;
}

function time(label: string, store: MirrorStore, request: WireRangeRequest, build: (store: MirrorStore, request: WireRangeRequest) => Buffer | number): void {
  let result: Buffer | number = 0;
  for (let i = 0; i < 3; i += 1) result = build(store, request); // warm up
  const bytes = typeof result === 'number' ? 0 : result.length;
  const samples: number[] = [];
  for (let i = 0; i < ROUNDS; i += 1) {
    const started = process.hrtime.bigint();
    build(store, request);
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const mean = samples.reduce((sum, s) => sum + s, 0) / samples.length;
  const at = (q: number): string => (samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? NaN).toFixed(2);
  console.log(`${label}: ${bytes > 0 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB answer; ` : ''}mean ${mean.toFixed(2)} ms, p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${at(0)} ms (${ROUNDS} rounds)`);
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-range-bench-'));
  const store = openStore(dataDir);
  try {
    fill(store);
    const prefix = { key: Buffer.from('/apisix/routes/'), range_end: Buffer.from('/apisix/routes0') };
    console.log(`${KEYS} keys x ${VALUE_BYTES} B values`);
    time('scan only (evaluateRange)', store, prefix, scan);
    time('whole-prefix Range', store, prefix, answer);
    time('whole-prefix Range, keys_only', store, { ...prefix, keys_only: true }, answer);
  } finally {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
