// etcd with TLS and client-certificate auth, and a proxy in front of it with
// TLS on both sides, all certificates from one test CA: what every TLS test
// starts from.
import type { TestCa } from './certs';
import { startEtcd, type EtcdServer } from './etcd';
import { startTestProxy, type TestProxy } from './proxy';

export interface Leaf {
  readonly cert: string;
  readonly key: string;
}

export interface TlsPair {
  readonly etcd: EtcdServer;
  readonly proxy: TestProxy;
  /** The proxy's own server certificate (its files may be replaced to test rotation). */
  readonly serverLeaf: Leaf;
  /** A client certificate for applications talking to etcd or the proxy. */
  readonly appLeaf: Leaf;
}

export async function startTlsPair(ca: TestCa): Promise<TlsPair> {
  const etcdLeaf = ca.issue('etcd');
  const upstreamLeaf = ca.issue('proxy-to-etcd');
  const serverLeaf = ca.issue('proxy');
  const appLeaf = ca.issue('app');
  const etcd = await startEtcd({ tls: { cert: etcdLeaf.cert, key: etcdLeaf.key, ca: ca.caCert } });
  try {
    const proxy = await startTestProxy(
      [etcd.clientUrl],
      [
        ...['--cacert', ca.caCert, '--cert', upstreamLeaf.cert, '--key', upstreamLeaf.key],
        ...['--cert-file', serverLeaf.cert, '--key-file', serverLeaf.key, '--trusted-ca-file', ca.caCert],
      ],
    );
    await proxy.mirrored();
    return { etcd, proxy, serverLeaf, appLeaf };
  } catch (error) {
    await etcd.stop();
    throw error;
  }
}
