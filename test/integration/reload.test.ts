// Integration (a real 3-member etcd cluster, the real CLI in its own
// process): SIGHUP and a changed config file reload member discovery and the
// mode (and the HTTP status of refused writes) while a watch and a stream of reads stay open; a broken file is
// refused and the running configuration stays.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { sleep } from '../support/etcd';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { metric } from '../support/metrics';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const READ_ONLY = 'etcd-cache-proxy: read-only proxy rejects writes';

describe('reloading the configuration', () => {
  let cluster: EtcdCluster;
  let proxy: ProxyProcess;
  let clients: RawClients;
  let dir: string;
  let configFile: string;

  const writeConfig = (values: Record<string, unknown>): void => writeFileSync(configFile, stringify(values));
  const members = async (): Promise<string[]> => {
    const text = await (await fetch(`http://${proxy.address}/metrics`)).text();
    return [...text.matchAll(/^etcd_cache_proxy_upstream_member_up\{member="([^"]+)"\}/gm)].map((m) => m[1] ?? '').sort();
  };
  /** Member list refreshes made, whatever their result. */
  const refreshes = (): Promise<number> => metric(`http://${proxy.address}`, 'etcd_cache_proxy_member_list_refreshes_total');

  before(async () => {
    cluster = await startEtcdCluster(3);
    dir = mkdtempSync(join(tmpdir(), 'ecp-reload-'));
    configFile = join(dir, 'proxy.yaml');
    writeConfig({ endpoints: [cluster.members[0]?.clientUrl], 'sync-interval': '1h', mode: 'readwrite' });
    proxy = await startProxyProcess([], ['--config-file', configFile]);
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await cluster?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('takes new discovery settings and modes without interrupting a watch or reads; refuses a broken file', async () => {
    await until('the whole cluster known', async () => (await members()).length === 3);
    const watch = new WatchClient(proxy.address);
    await watch.createAll([{ key: b('reload/'), range_end: b('reload0') }]);
    let reading = true;
    const readErrors: string[] = [];
    let reads = 0;
    const reader = (async () => {
      while (reading) {
        const got = await call(clients.kv, 'Range', { key: b('reload/'), range_end: b('reload0') }, { deadlineMs: 5_000 });
        if (got.error === null) reads += 1;
        else readErrors.push(`${status[got.error.code]}: ${got.error.details}`);
        await sleep(20);
      }
    })();
    const put = async (value: string): Promise<{ code: status | null; details: string }> => {
      const outcome = await call(clients.kv, 'Put', { key: b('reload/k'), value: b(value) }, { deadlineMs: 5_000 });
      return { code: outcome.error?.code ?? null, details: outcome.error?.details ?? '' };
    };
    try {
      assert.deepEqual(await put('1'), { code: null, details: '' });

      // A member joins; with a one-hour sync interval the proxy does not hear of it. A member list refresh is
      // the only way it could, so none may be made: the absence of something is seen only over a window of
      // time, here 2 s (four of the 500 ms interval set below) from when the proxy knew the three members,
      // across the fourth's start (its client URL is in the cluster's member list from then on).
      const refreshesBefore = await refreshes();
      const windowEnd = Date.now() + 2_000;
      const added = await cluster.addMember('m4');
      await sleep(windowEnd - Date.now());
      assert.equal(await refreshes(), refreshesBefore, 'no member list refresh before the reload');
      assert.equal((await members()).includes(added.clientUrl), false);
      // ...until a reload names another member and a short interval: SIGHUP.
      writeConfig({ endpoints: [cluster.members[1]?.clientUrl], 'sync-interval': '500ms', mode: 'readwrite' });
      proxy.child.kill('SIGHUP');
      await until('the new member known after the reload', async () => (await members()).includes(added.clientUrl));
      // The reload refreshes once; the 500 ms interval brings the next.
      await until('a refresh after the one the reload made', async () => (await refreshes()) >= refreshesBefore + 2);
      assert.deepEqual(await put('2'), { code: null, details: '' });

      // The file alone (no signal): read-only from now on, reads and the watch unaffected.
      writeConfig({ endpoints: [cluster.members[1]?.clientUrl], 'sync-interval': '500ms', mode: 'readonly' });
      await until('writes refused as read-only', async () => (await put('x')).details === READ_ONLY);
      assert.equal((await put('x')).code, status.UNIMPLEMENTED);
      const httpPut = async (): Promise<number> =>
        (await fetch(`http://${proxy.address}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b('reload/k').toString('base64'), value: b('h').toString('base64') }) })).status;
      assert.equal(await httpPut(), 501);
      // The JSON gateway's status for a refused write follows the file too.
      writeConfig({ endpoints: [cluster.members[1]?.clientUrl], 'sync-interval': '500ms', mode: 'readonly', 'write-reject-http-status': '429' });
      await until('refused HTTP writes answered 429', async () => (await httpPut()) === 429);

      // A broken file is refused, and read-only stays.
      writeConfig({ endpoints: [cluster.members[1]?.clientUrl], mode: 'sideways' });
      proxy.child.kill('SIGHUP');
      await until('the refusal logged', () => proxy.stderr().includes('reloaded configuration refused'));
      assert.match(proxy.stderr(), /--mode=sideways: must be one of readwrite, readonly/);
      assert.equal((await put('x')).details, READ_ONLY);

      // Back to read-write; a setting that needs a restart is named, not applied.
      writeConfig({ endpoints: [cluster.members[1]?.clientUrl], 'sync-interval': '500ms', mode: 'readwrite', history: '5' });
      proxy.child.kill('SIGHUP');
      await until('writes accepted again', async () => (await put('3')).code === null);
      await until('the restart-only setting named', () => /"needRestart":\["history"\]/.test(proxy.stderr()));

      await watch.until('every accepted write seen by the watch', () => {
        const values = watch.responses.flatMap((r) => r.events ?? []).map((e) => e.kv?.value?.toString());
        return ['1', '2', '3'].every((v) => values.includes(v));
      });
      assert.equal(watch.ended, null, 'the watch stayed open through every reload');
    } finally {
      reading = false;
      await reader;
      watch.close();
    }
    assert.deepEqual(readErrors, [], `${reads} reads`);
    assert.ok(reads > 20);
    assert.equal(proxy.child.exitCode, null, 'still running');
  });
});
