// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, the etcd3 npm client, differential): what
// clientv3's leasing KV and its sessions rely on. A holder keeps a lease alive
// and owns a key under it; when its keep-alive stops (released, not revoked)
// the lease expires within its TTL and every watcher sees the key go, through
// the proxy as with etcd directly: the proxy's shared keep-alive stream
// renews only what a client asked for.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { until } from '../support/until';

const TTL_SECONDS = 3;

describe('a lease whose keep-alive stops', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let observer: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    observer = new Etcd3({ hosts: etcd.clientUrl });
  });
  after(async () => {
    observer?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  /** Seconds from the holder's last renewal until a watcher on etcd saw its key deleted. */
  async function expiryAfterRelease(hosts: string, key: string): Promise<number> {
    const holder = new Etcd3({ hosts });
    const watcher = await observer.watch().key(key).create();
    let deletedAt = 0;
    watcher.on('delete', () => {
      deletedAt = Date.now();
    });
    try {
      const lease = holder.lease(TTL_SECONDS);
      await lease.put(key).value('owner');
      // Kept alive past its TTL first: the renewals through this path work.
      await new Promise((resolve) => setTimeout(resolve, (TTL_SECONDS + 1) * 1000));
      assert.equal(await observer.get(key).string(), 'owner', 'kept alive past its TTL');
      lease.release(); // stops the keep-alive, does not revoke
      const releasedAt = Date.now();
      await until(`${key} to expire`, () => deletedAt > 0, (TTL_SECONDS + 10) * 1000);
      return (deletedAt - releasedAt) / 1000;
    } finally {
      await watcher.cancel();
      holder.close();
    }
  }

  it('expires within its TTL once the holder stops renewing, through the proxy as directly', async () => {
    const [direct, proxied] = await Promise.all([expiryAfterRelease(etcd.clientUrl, 'owner/direct'), expiryAfterRelease(proxy.url, 'owner/proxied')]);
    // etcd checks expiry every 500 ms; a renewal sent just before the release adds up to one TTL.
    for (const [path, seconds] of [['direct', direct], ['proxied', proxied]] as const) {
      assert.ok(seconds <= TTL_SECONDS + 1.5, `${path}: expired ${seconds.toFixed(1)} s after the release`);
    }
  });
});
