import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientLogin } from './client-login';
import type { Violation } from './checker/violation';
import { awaitProxyAt, etcdRevision } from './convergence';
import type { Fleet, FleetProxy } from './fleet';
import { KvClient } from './kv-client';
import type { OperationRecord } from './history';
import type { Random } from './rng';
import type { Recording } from './recording';

/** What the fault takes of faults.ts' context. */
export interface BucketFaultContext {
  readonly fleet: Fleet;
  /** With etcd's auth on: root's login (for etcd's revision). */
  readonly login: ClientLogin | null;
  readonly random: Random;
  readonly recording: Recording;
  readonly findings: Violation[];
}

/** How long the wiped proxy may take to adopt the bucket's snapshot: the upstream timeout (2 s), a look at `latest`, the fetch. */
const ADOPT_MS = 15_000;
/** How long it may take to answer at etcd's revision once the members are back. */
const RECOVERY_MS = 15_000;
/** The recorded client of the fault's own reads. */
const PROBE = 'bucket-probe';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A counter's value in the proxy's /metrics (0 when absent or unreachable). */
async function metric(proxy: FleetProxy, line: string): Promise<number> {
  try {
    const text = await (await fetch(`http://${proxy.address}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    const found = text.split('\n').find((each) => each.startsWith(`${line} `));
    return found === undefined ? 0 : Number(found.slice(line.length + 1));
  } catch {
    return 0;
  }
}

const ADOPTED = 'etcd_cache_proxy_snapshot_fetches_total{result="adopted"}';

/** Empties a data dir (not the dir itself: it may be a tmpfs mount point). */
function wipe(dir: string): void {
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

/**
 * A machine replaced during an outage: every member SIGKILLed, then one
 * proxy that mirrors the publisher's keys SIGKILLed, its data dir wiped, and
 * started again while etcd is still down. It must adopt the bucket's signed
 * snapshot and serve it marked stale (without auth; with auth, a request
 * without a token must get nothing: the new process knows no token); then
 * the members come back and it must reach etcd's revision. Its reads are
 * recorded, so the checker holds them (and the traffic's) to etcd's history.
 *
 * Either proxy that mirrors the whole keyspace may be the one: the other
 * one's snapshot, or (the publisher itself) its own from before the wipe;
 * the prefix mirror takes no snapshot of the whole keyspace, by design.
 */
export async function bucketFallback(context: BucketFaultContext): Promise<{ target: string; detail: string }> {
  const { fleet, random, recording, findings } = context;
  const bucket = fleet.bucket;
  if (bucket === null) return { target: 'none', detail: 'skipped: the fleet has no bucket' };
  const proxy = random.pick(fleet.proxies.filter((each) => each.prefixes.length === 0));
  const finding = (message: string, evidence: readonly OperationRecord[] = []): void => {
    findings.push({ check: 'bucket-fallback', message: `${proxy.name}: ${message}`, evidence });
  };
  const published = await bucket.latestRevision();
  if (published === 0) {
    finding('the bucket held no snapshot (the publisher published nothing)');
    return { target: proxy.name, detail: 'skipped: no snapshot in the bucket' };
  }
  const members = fleet.cluster.members;
  for (const member of members) member.signal('SIGKILL');
  await proxy.kill();
  wipe(proxy.dataDir);
  const detail = [`all members SIGKILLed, its data dir wiped, restarted with latest at ${published}`];
  try {
    try {
      await proxy.restart();
    } catch (error) {
      finding(`did not start on an empty data dir with etcd down: ${String(error).slice(-2_000)}`);
      detail.push('it did not start');
      return { target: proxy.name, detail: detail.join('; ') };
    }
    const adopted = await serveFromBucket(proxy, context, published, finding);
    detail.push(adopted);
    await sleep(random.int(2_000, 4_000));
    if (!proxy.running()) {
      finding(`exited while it served the bucket's snapshot; its last words:\n${proxy.stderr().slice(-1_500)}`);
      detail.push('it EXITED');
    }
  } finally {
    await Promise.all(members.map((member) => member.restart()));
  }
  if (!proxy.running()) {
    try {
      await proxy.restart();
    } catch (error) {
      finding(`did not start again: ${String(error).slice(-2_000)}`);
      return { target: proxy.name, detail: `${detail.join('; ')}; it did not start again` };
    }
  }
  const stuck = await awaitProxyAt(proxy, recording, PROBE, await etcdRevision(fleet, context.login), RECOVERY_MS, 'the members were back', context.login);
  if (stuck !== null) {
    findings.push(stuck);
    detail.push(`its mirror did not reach etcd's revision within ${RECOVERY_MS} ms`);
  } else detail.push('members restarted; it reached etcd\'s revision');
  return { target: proxy.name, detail: detail.join('; ') };
}

/**
 * Until it has adopted (its fetch counter) and answers: a read of every key,
 * serializable and linearizable, recorded. Without auth both must be answered
 * marked stale, at the adopted revision or newer than `published`; with auth,
 * the same reads without a token must not be answered (the process knows no
 * token, and etcd cannot say whose one is). Returns what happened, for the
 * fault's line.
 */
async function serveFromBucket(proxy: FleetProxy, context: BucketFaultContext, published: number, finding: (message: string, evidence?: readonly OperationRecord[]) => void): Promise<string> {
  const deadline = performance.now() + ADOPT_MS;
  while ((await metric(proxy, ADOPTED)) < 1) {
    if (!proxy.running() || performance.now() > deadline) {
      finding(`did not adopt the bucket's snapshot within ${ADOPT_MS} ms${proxy.running() ? '' : ' (it exited)'}; its log:\n${proxy.stderr().slice(-1_500)}`);
      return 'it did NOT adopt the snapshot';
    }
    await sleep(200);
  }
  const kv = new KvClient(proxy.address);
  try {
    const reads: OperationRecord[] = [];
    for (const serializable of [true, false]) {
      reads.push(await context.recording.send(PROBE, proxy.name, kv, { kind: 'range', key: '\0', rangeEnd: '\0', revision: 0, serializable, limit: 0, countOnly: false, keysOnly: false }));
    }
    if (context.login !== null) {
      const leaked = reads.filter((read) => read.result.ok);
      if (leaked.length > 0) finding('answered a read without a token while etcd (with auth on) was down', leaked);
      return `adopted the snapshot; reads without a token ${leaked.length === 0 ? 'refused' : 'ANSWERED'}`;
    }
    for (const read of reads) {
      if (!read.result.ok) finding(`did not answer a read from the adopted snapshot: ${read.result.message}`, [read]);
      else if (!read.result.stale) finding('answered from the adopted snapshot without the stale mark while etcd was down', [read]);
      else if (read.result.revision < published) finding(`answered at ${read.result.revision}, below latest's ${published}`, [read]);
    }
    const first = reads[0]?.result;
    return `adopted the snapshot, answered at ${first?.ok === true ? `${first.revision}${first.stale ? ', stale' : ''}` : 'nothing'}`;
  } finally {
    kv.close();
  }
}

