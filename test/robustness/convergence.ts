import type { ClientLogin } from './client-login';
import type { Fleet, FleetProxy } from './fleet';
import { KvClient } from './kv-client';
import type { Recording } from './recording';
import { prefixEnd } from './traffic';
import type { Violation } from './checker/violation';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** etcd's newest revision, asked of any member that answers (logged in as `login` with etcd's auth on). */
export async function etcdRevision(fleet: Fleet, login: ClientLogin | null = null): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    for (const member of fleet.cluster.members) {
      const client = new KvClient(member.clientAddress, login);
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
 * Reads `proxy` (serializable, from its mirror) until it answers at
 * `revision` or newer, within `withinMs`; the reads are recorded as
 * `client`'s, so the checker compares their content too. A violation when
 * it does not.
 */
export async function awaitProxyAt(proxy: FleetProxy, recording: Recording, client: string, revision: number, withinMs: number, why: string, login: ClientLogin | null = null): Promise<Violation | null> {
  const kv = new KvClient(proxy.address, login);
  const deadline = performance.now() + withinMs;
  const ranges = proxy.prefixes.length === 0 ? [{ key: '\0', rangeEnd: '\0' }] : proxy.prefixes.map((prefix) => ({ key: prefix, rangeEnd: prefixEnd(prefix) }));
  try {
    for (const range of ranges) {
      for (;;) {
        if (login !== null && !(await login.ensure(proxy.address))) {
          if (performance.now() > deadline) return { check: 'convergence', message: `${proxy.name}: ${login.user} could not log in ${withinMs} ms after ${why}`, evidence: [] };
          await sleep(100);
          continue;
        }
        const record = await recording.send(client, proxy.name, kv, { kind: 'range', ...range, revision: 0, serializable: true, limit: 0, countOnly: false, keysOnly: false });
        if (record.result.ok && record.result.revision >= revision) break;
        if (!record.result.ok) login?.failed(record.result.code, record.result.message);
        if (performance.now() > deadline) return { check: 'convergence', message: `${proxy.name}: its mirror had not reached etcd's revision ${revision} ${withinMs} ms after ${why}`, evidence: [record] };
        await sleep(100);
      }
    }
    return null;
  } finally {
    kv.close();
  }
}

/** After the faults stop, every proxy's mirror equals etcd within `withinMs` (awaitProxyAt, as client 'final'). */
export async function awaitConvergence(fleet: Fleet, recording: Recording, revision: number, withinMs: number, login: () => ClientLogin | null = () => null): Promise<Violation[]> {
  const found = await Promise.all(fleet.proxies.map((proxy) => awaitProxyAt(proxy, recording, 'final', revision, withinMs, 'the faults stopped', login())));
  return found.filter((violation): violation is Violation => violation !== null);
}
