import { Metadata } from '@grpc/grpc-js';
import type { ClientLogin } from './client-login';
import type { Fleet } from './fleet';
import { KvClient } from './kv-client';
import type { Recording } from './recording';
import { prefixEnd } from './traffic';
import type { Violation } from './checker/violation';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** etcd's newest revision, asked of any member that answers. */
export async function etcdRevision(fleet: Fleet, login: ClientLogin | null): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    for (const member of fleet.cluster.members) {
      const client = new KvClient(member.clientAddress, () => login?.metadata() ?? new Metadata());
      try {
        if (login !== null && !(await login.ensure(member.clientAddress))) continue;
        const answer = await client.send({ kind: 'range', key: '\0', rangeEnd: '\0', revision: 0, serializable: false, limit: 1, countOnly: true, keysOnly: false });
        if (answer.ok) return answer.revision;
        login?.failed(answer.code, answer.message);
      } finally {
        client.close();
      }
    }
    await sleep(200);
  }
  throw new Error('no etcd member answered a linearizable read');
}

/**
 * After the faults stop, every proxy's mirror equals etcd within `withinMs`:
 * each proxy is read (serializable, from its mirror) until it answers at
 * etcd's revision; those reads are recorded, so the checker compares their
 * content too.
 */
export async function awaitConvergence(fleet: Fleet, recording: Recording, revision: number, withinMs: number, login: () => ClientLogin | null): Promise<Violation[]> {
  const violations: Violation[] = [];
  await Promise.all(
    fleet.proxies.map(async (proxy) => {
      const proxyLogin = login();
      const client = new KvClient(proxy.address, () => proxyLogin?.metadata() ?? new Metadata());
      const deadline = performance.now() + withinMs;
      const ranges = proxy.prefixes.length === 0 ? [{ key: '\0', rangeEnd: '\0' }] : proxy.prefixes.map((prefix) => ({ key: prefix, rangeEnd: prefixEnd(prefix) }));
      try {
        for (const range of ranges) {
          for (;;) {
            if (proxyLogin !== null && !(await proxyLogin.ensure(proxy.address))) {
              if (performance.now() > deadline) break;
              await sleep(100);
              continue;
            }
            const record = await recording.send('final', proxy.name, client, { kind: 'range', ...range, revision: 0, serializable: true, limit: 0, countOnly: false, keysOnly: false });
            if (record.result.ok && record.result.revision >= revision) break;
            if (!record.result.ok) proxyLogin?.failed(record.result.code, record.result.message);
            if (performance.now() > deadline) {
              violations.push({ check: 'convergence', message: `${proxy.name}: its mirror had not reached etcd's revision ${revision} ${withinMs} ms after the faults stopped`, evidence: [record] });
              break;
            }
            await sleep(100);
          }
        }
      } finally {
        client.close();
      }
    }),
  );
  return violations;
}
