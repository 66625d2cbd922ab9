// One etcd and a proxy in front of it, synced, for the enclosing describe (or
// file): started in a before hook, stopped in an after hook, by pid.
import { after, before } from 'node:test';
import { startEtcd, type EtcdServer } from './etcd';
import { startTestProxy, type TestProxy } from './proxy';

export interface EtcdAndProxy {
  readonly etcd: EtcdServer;
  readonly proxy: TestProxy;
}

/** Read the fields inside tests (they are set once the before hook has run). */
export function etcdAndProxy(proxyArgs: readonly string[] = []): EtcdAndProxy {
  const fixture: { etcd?: EtcdServer; proxy?: TestProxy } = {};
  before(async () => {
    fixture.etcd = await startEtcd();
    fixture.proxy = await startTestProxy([fixture.etcd.clientUrl], proxyArgs);
    await fixture.proxy.mirrored();
  });
  after(async () => {
    await fixture.proxy?.stop();
    await fixture.etcd?.stop();
  });
  return {
    get etcd(): EtcdServer {
      if (fixture.etcd === undefined) throw new Error('etcd is not started yet: read it inside a test');
      return fixture.etcd;
    },
    get proxy(): TestProxy {
      if (fixture.proxy === undefined) throw new Error('the proxy is not started yet: read it inside a test');
      return fixture.proxy;
    },
  };
}
