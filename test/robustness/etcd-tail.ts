import { startEtcd } from '../support/etcd';
import type { ClusterMember } from '../support/etcd-cluster';
import type { ClientLogin } from './client-login';
import { EtcdRecorder } from './etcd-recorder';
import type { EtcdRevision } from './history';
import { KvClient } from './kv-client';

/** How long reading one dead member's tail may take, start included. */
const TAIL_READ_MS = 15_000;

/**
 * What a cluster stopped at once made in its last moments, which the history
 * watch had not received yet: each member's data dir is copied and started
 * alone (--force-new-cluster, which keeps only what the member knew was
 * committed, on ports no client knows), and read from `from` on until it
 * has the copy's newest revision. The longest tail is the one the leader
 * held. Every tail agrees on the revisions they share (they are one log).
 */
export async function readTail(members: readonly ClusterMember[], from: number, login: () => ClientLogin | null): Promise<{ tail: EtcdRevision[]; problems: string[] }> {
  const tails = await Promise.all(members.map((member) => readMemberTail(member, from, login())));
  const problems = tails.flatMap((tail) => (typeof tail === 'string' ? [tail] : []));
  const read = tails.filter((tail): tail is EtcdRevision[] => typeof tail !== 'string');
  const longest = read.reduce<EtcdRevision[]>((best, tail) => ((tail.at(-1)?.revision ?? 0) > (best.at(-1)?.revision ?? 0) ? tail : best), []);
  return { tail: longest, problems: read.length === 0 ? problems : [] };
}

async function readMemberTail(member: ClusterMember, from: number, login: ClientLogin | null): Promise<EtcdRevision[] | string> {
  let copy;
  try {
    copy = await startEtcd({ name: member.name, copyOf: member.dataPath, extraArgs: ['--force-new-cluster'] });
  } catch (error) {
    return `${member.name}'s data could not be started alone: ${error instanceof Error ? error.message.slice(0, 300) : String(error)}`;
  }
  const recorder = new EtcdRecorder(() => [copy.clientAddress], login, from);
  try {
    const newest = await newestRevision(copy.clientAddress, login);
    if (newest === null) return `${member.name}'s copy did not answer`;
    if (!(await recorder.caughtUp(newest, TAIL_READ_MS))) return `${member.name}'s copy: the history watch did not reach ${newest}`;
    return await recorder.close();
  } finally {
    await recorder.close();
    await copy.stop();
  }
}

async function newestRevision(address: string, login: ClientLogin | null): Promise<number | null> {
  const client = new KvClient(address, login);
  try {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      if (login === null || (await login.ensure(address))) {
        const answer = await client.send({ kind: 'range', key: '\0', rangeEnd: '\0', revision: 0, serializable: true, limit: 1, countOnly: true, keysOnly: false });
        if (answer.ok) return answer.revision;
        login?.failed(answer.code, answer.message);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return null;
  } finally {
    client.close();
  }
}
