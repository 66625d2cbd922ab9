// Integration (real etcd, a regional proxy and an edge proxy in front of it,
// each the CLI in its own process): etcd is killed, then the regional is
// killed and started again on its own data dir while etcd is still down. The
// restarted regional serves what its mirror holds, marked stale, and the
// edge goes on serving its gateway's reads through the outage and the
// regional's restart; a write through the edge is refused at once. When etcd
// is back, a write through the edge reaches etcd and the edge's reads.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { after, before, describe, it } from 'node:test';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';
import { STALE_HEADER } from '../../src/etcd/metadata';

const b = (s: string): Buffer => Buffer.from(s);
const UPSTREAM_TIMEOUT = '2000ms';

interface Read {
  readonly value: string | null;
  readonly stale: boolean;
  readonly error: string | null;
}

/** A serializable Range of one key: its value (null when absent), whether the answer was marked stale, or its error. */
async function read(clients: RawClients, key: string): Promise<Read> {
  const answer = await call<{ kvs?: { value?: Buffer }[] }>(clients.kv, 'Range', { key: b(key), serializable: true }, { deadlineMs: 3_000 });
  if (answer.error !== null) return { value: null, stale: false, error: answer.error.details };
  return { value: answer.response?.kvs?.[0]?.value?.toString() ?? null, stale: answer.headers?.get(STALE_HEADER)[0] === 'true', error: null };
}

describe('tiers: a regional restarted during an etcd outage', () => {
  let etcd: EtcdServer;
  let regional: ProxyProcess;
  let edge: ProxyProcess;
  let regionalPort: number;
  const regionalDir = mkdtempSync(join(tmpdir(), 'ecp-regional-'));
  let edgeClients: RawClients;

  const startRegional = async (): Promise<ProxyProcess> =>
    startProxyProcess([etcd.clientUrl], ['--upstream-timeout', UPSTREAM_TIMEOUT], { port: regionalPort, dataDir: regionalDir });

  before(async () => {
    etcd = await startEtcd();
    regionalPort = await freePort();
    regional = await startRegional();
    edge = await startProxyProcess([`http://${regional.address}`], ['--upstream-timeout', UPSTREAM_TIMEOUT]);
    edgeClients = rawClients(edge.address);
  });
  after(async () => {
    edgeClients?.close();
    await edge?.stop();
    await regional?.stop();
    await etcd?.stop();
    rmSync(regionalDir, { recursive: true, force: true });
  });

  it('serves the edge from its own mirror, stale-marked, and the edge refuses writes at once', async () => {
    const direct = rawClients(etcd.clientAddress);
    const written = await call(direct.kv, 'Put', { key: b('/apisix/routes/1'), value: b('before the outage') });
    direct.close();
    assert.equal(written.error, null);
    await until('the edge to serve the write', async () => (await read(edgeClients, '/apisix/routes/1')).value === 'before the outage');

    etcd.signal('SIGKILL');
    await until('etcd to be gone', () => !etcd.running());
    regional.child.kill('SIGKILL');
    await regional.exited;
    regional = await startRegional();

    let last: Read | null = null;
    const regionalClients = rawClients(regional.address);
    try {
      await until(
        () => `the restarted regional to serve its mirror, stale-marked; last answer ${JSON.stringify(last)}`,
        async () => {
          last = await read(regionalClients, '/apisix/routes/1');
          return last.value === 'before the outage' && last.stale;
        },
        15_000,
      );
    } finally {
      regionalClients.close();
    }
    await until(
      () => `the edge to serve the value, stale-marked; last answer ${JSON.stringify(last)}`,
      async () => {
        last = await read(edgeClients, '/apisix/routes/1');
        return last.value === 'before the outage' && last.stale;
      },
      15_000,
    );

    const started = Date.now();
    const refused = await call(edgeClients.kv, 'Put', { key: b('/apisix/routes/2'), value: b('during the outage') }, { deadlineMs: 5_000 });
    assert.equal(refused.error?.code, status.UNAVAILABLE, `a write through the edge during the outage: ${refused.error?.details ?? 'accepted'}`);
    assert.ok(Date.now() - started < 1_000, `refused at once, not after ${Date.now() - started} ms`);
  });

  it('takes writes again through the restarted regional once etcd is back', async () => {
    await etcd.restart();
    let lastError = '';
    await until(
      () => `a write through the edge to go through; last error: ${lastError}`,
      async () => {
        const answer = await call(edgeClients.kv, 'Put', { key: b('/apisix/routes/3'), value: b('after the outage') }, { deadlineMs: 2_000 });
        lastError = answer.error?.details ?? '';
        return answer.error === null;
      },
      30_000,
    );
    await until('the edge to read its write, no longer stale', async () => {
      const answer = await read(edgeClients, '/apisix/routes/3');
      return answer.value === 'after the outage' && !answer.stale;
    });
  });
});
