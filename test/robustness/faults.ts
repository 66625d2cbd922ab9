import type { ClientLogin } from './client-login';
import type { Violation } from './checker/violation';
import type { ClusterMember } from '../support/etcd-cluster';
import { childPids, freezePid } from '../support/processes';
import { fillUp } from '../support/tmpfs';
import { awaitProxyAt, etcdRevision } from './convergence';
import type { EtcdEpochs } from './etcd-epochs';
import { restoreEtcd } from './fault-restore';
import { bucketFallback } from './fault-bucket';
import type { Fleet, FleetProxy } from './fleet';
import { KvClient } from './kv-client';
import { agreedLeader, moveLeader } from './leadership';
import type { Random } from './rng';
import type { Recording } from './recording';

/** The faults a run may inject (--faults picks some). */
export const FAULTS = [
  'kill-member',
  'stop-member',
  'kill-two-members',
  'stop-two-members',
  'kill-all',
  'stop-all',
  'kill-proxy',
  'restart-proxy-in-outage',
  'compact-via-proxy',
  'compact-etcd',
  'leader-move',
  'partition-member',
  'disk-full',
  'pause-proxy',
  'restore-etcd',
  'restore-etcd-new-cluster',
  'bucket-fallback',
] as const;
export type FaultName = (typeof FAULTS)[number];

/** The size of each proxy's data dir tmpfs when `disk-full` may run: room for a run's mirror, little enough to fill at once. */
export const DATA_DIR_TMPFS_BYTES = 64 * 1024 * 1024;

/** How long a proxy may take to answer at etcd's revision again after a fault that left etcd up (a full disk, a pause). */
const RECOVERY_MS = 15_000;

/** How far below etcd's history watch a compaction stays (that watch must never be compacted). */
const COMPACTION_MARGIN = 25;

export interface FaultContext {
  readonly fleet: Fleet;
  /** With etcd's auth on: root's login (compactions are root's). */
  readonly login: ClientLogin | null;
  readonly random: Random;
  readonly recording: Recording;
  /** etcd's history, epoch by epoch (a restore begins the next). */
  readonly epochs: EtcdEpochs;
  /** The highest revision compacted so far. */
  compacted: number;
  /** What a fault itself saw go wrong (a proxy that exited, one that did not come back): violations of the run. */
  readonly findings: Violation[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function killMembers(members: readonly ClusterMember[], downMs: number): Promise<void> {
  for (const member of members) member.signal('SIGKILL');
  await sleep(downMs);
  // Together: a member alone cannot elect a leader, and restart() waits until it serves.
  await Promise.all(members.map((member) => member.restart()));
}

async function stopMembers(members: readonly ClusterMember[], pausedMs: number): Promise<void> {
  await Promise.all(members.map((member) => member.freeze()));
  await sleep(pausedMs);
  for (const member of members) member.signal('SIGCONT');
}

async function killProxy(proxy: FleetProxy, downMs: number): Promise<void> {
  await proxy.kill();
  await sleep(downMs);
  await proxy.restart();
}

async function compact(context: FaultContext, via: string, address: string): Promise<string> {
  const revision = context.epochs.revision - COMPACTION_MARGIN;
  if (revision <= context.compacted) return `skipped (etcd at ${context.epochs.revision}, compacted at ${context.compacted})`;
  const login = context.login;
  const client = new KvClient(address, login);
  try {
    // Twice at most: root's token may be one a restarted etcd forgot (the first answer says so, and root logs in again).
    let outcome = '';
    for (let attempt = 0; attempt < 2; attempt += 1) {
      if (login !== null && !(await login.ensure(address))) return `at ${revision} not asked: root could not log in`;
      const record = await context.recording.send('compactor', via, client, { kind: 'compact', revision });
      if (record.result.ok) {
        context.compacted = revision;
        return `at ${revision}`;
      }
      login?.failed(record.result.code, record.result.message);
      outcome = `at ${revision} failed: ${record.result.message}`;
      if (login === null) break;
    }
    return outcome;
  } finally {
    client.close();
  }
}

/** A linearizable read straight on `member` until it answers (it is back in the cluster), within `withinMs`. */
async function answersLinearizable(member: ClusterMember, withinMs: number): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  const client = new KvClient(member.clientAddress);
  try {
    for (;;) {
      const answer = await client.send({ kind: 'range', key: '\0', rangeEnd: '\0', revision: 0, serializable: false, limit: 1, countOnly: true, keysOnly: false });
      if (answer.ok) return true;
      if (performance.now() > deadline) return false;
      await sleep(200);
    }
  } finally {
    client.close();
  }
}

/**
 * Cuts one member off from its peers for a few seconds: the cluster's peer
 * URLs are forwarders of ours (support/peer-network.ts), which drop every
 * link to or from the member and hold new ones until healed. Clients still
 * reach it. Waits until it answers a linearizable read again.
 */
async function partitionMember(context: FaultContext): Promise<{ target: string; detail: string }> {
  const { fleet, random } = context;
  const members = fleet.cluster.members;
  const network = fleet.cluster.peerNetwork;
  if (network === null) return { target: 'none', detail: 'skipped: the cluster runs without its peer forwarders' };
  const member = random.pick(members);
  const cutMs = random.int(3_000, 7_000);
  const before = await agreedLeader(members, 5_000);
  const unknownBefore = network.unknownDialers;
  const { dropped } = network.cutOff(member.name);
  await sleep(cutMs);
  network.heal();
  const unknown = network.unknownDialers - unknownBefore;
  const back = await answersLinearizable(member, RECOVERY_MS);
  const after = await agreedLeader(members);
  return {
    target: member.name,
    detail:
      `peer traffic cut for ${cutMs} ms by the peer forwarders (${dropped} links to or from it dropped, new ones held, then dropped when healed` +
      `${unknown > 0 ? `; ${unknown} links whose dialer was not found let through` : ''}); its client port stayed open; ` +
      `leader before ${before?.member.name ?? 'unknown'}, after ${after?.member.name ?? 'none agreed'}` +
      (back ? '' : `; it did not answer a linearizable read within ${RECOVERY_MS} ms of the heal`),
  };
}

/**
 * Fills one proxy's data dir (a tmpfs of its own) with a file until ENOSPC,
 * holds it a few seconds, removes it; then the proxy must answer at etcd's
 * revision again. A proxy that exited meanwhile is a finding (and is
 * restarted, for the rest of the run).
 */
async function fillDisk(context: FaultContext): Promise<{ target: string; detail: string }> {
  const { fleet, random } = context;
  const candidates = fleet.proxies.filter((proxy) => proxy.tmpfs && proxy.running());
  if (candidates.length === 0) return { target: 'none', detail: `skipped: no proxy's data dir is on a tmpfs (${fleet.tmpfsRefused ?? 'none was asked for'})` };
  const proxy = random.pick(candidates);
  const holdMs = random.int(2_000, 5_000);
  const logged = proxy.stderr().length;
  const filler = fillUp(proxy.dataDir);
  await sleep(holdMs);
  const exited = !proxy.running();
  filler.remove();
  const detail = [`its data dir (a ${DATA_DIR_TMPFS_BYTES >> 20} MiB tmpfs) filled with a ${Math.round(filler.bytes / 1024)} KiB file until ENOSPC, held ${holdMs} ms, removed`];
  // What the proxy said meanwhile (it logs at warn and above in the fleet): whether the full disk reached it.
  const said = proxy.stderr().slice(logged).split('\n').filter((line) => line.trim() !== '');
  detail.push(said.length === 0 ? 'the proxy logged nothing meanwhile' : `the proxy logged ${said.length} lines, the first: ${(said[0] ?? '').slice(0, 300)}`);
  if (exited) {
    const stderr = proxy.stderr().slice(-1_500);
    context.findings.push({ check: 'disk-full', message: `${proxy.name} exited while its disk was full; its last words:\n${stderr}`, evidence: [] });
    detail.push('the proxy EXITED while the disk was full');
    try {
      await proxy.restart();
    } catch (error) {
      context.findings.push({ check: 'disk-full', message: `${proxy.name} did not start again after its disk had room: ${String(error)}`, evidence: [] });
      return { target: proxy.name, detail: `${detail.join('; ')}; it did not start again` };
    }
  }
  const stuck = await awaitProxyAt(proxy, context.recording, 'fault-probe', await etcdRevision(fleet, context.login), RECOVERY_MS, 'its disk had room again', context.login);
  if (stuck !== null) {
    context.findings.push(stuck);
    detail.push(`its mirror did not reach etcd's revision within ${RECOVERY_MS} ms`);
  }
  return { target: proxy.name, detail: detail.join('; ') };
}

/** A process and everything it started (a --workers proxy's workers, tsx's helper), parents first. */
function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length && tree.length < 64; i += 1) tree.push(...childPids(tree[i] ?? 0));
  return tree;
}

/** SIGSTOP of one proxy's processes (all of them, as a paused VM or container) for a few seconds, then SIGCONT. */
async function pauseProxy(context: FaultContext): Promise<{ target: string; detail: string }> {
  const { fleet, random } = context;
  const proxy = random.pick(fleet.proxies);
  const pid = proxy.pid();
  if (pid === undefined || !proxy.running()) return { target: proxy.name, detail: 'skipped: not running' };
  const pausedMs = random.int(1_000, 4_000);
  const stopped: number[] = [];
  try {
    // Parents first: a stopped primary does not start a worker in place of one being stopped.
    for (const each of processTree(pid)) {
      // Listed before it is stopped: one that stops late still gets its SIGCONT.
      stopped.push(each);
      try {
        await freezePid(each);
      } catch {
        // gone since it was listed (tsx's helper comes and goes)
      }
    }
    await sleep(pausedMs);
  } finally {
    for (const each of [...stopped].reverse()) {
      try {
        process.kill(each, 'SIGCONT');
      } catch {
        // gone meanwhile
      }
    }
  }
  const detail = [`SIGSTOP of its process tree (${stopped.length} ${stopped.length === 1 ? 'process' : 'processes'}) for ${pausedMs} ms, SIGCONT`];
  const stuck = await awaitProxyAt(proxy, context.recording, 'fault-probe', await etcdRevision(fleet, context.login), RECOVERY_MS, 'it was resumed', context.login);
  if (stuck !== null) {
    context.findings.push(stuck);
    detail.push(`its mirror did not reach etcd's revision within ${RECOVERY_MS} ms`);
  }
  return { target: proxy.name, detail: detail.join('; ') };
}

/** Two members chosen by the seed, in the cluster's order. */
function twoOf(members: readonly ClusterMember[], random: Random): ClusterMember[] {
  const spared = random.pick(members);
  return members.filter((member) => member !== spared).slice(0, 2);
}

/** Injects one fault and waits for what it broke to come back; returns what it did, for the report. */
async function inject(name: FaultName, context: FaultContext): Promise<{ target: string; detail: string }> {
  const { fleet, random } = context;
  const members = fleet.cluster.members;
  switch (name) {
    case 'kill-member': {
      const member = random.pick(members);
      await killMembers([member], random.int(1_000, 4_000));
      return { target: member.name, detail: 'SIGKILL, restarted' };
    }
    case 'stop-member': {
      const member = random.pick(members);
      await stopMembers([member], random.int(1_000, 4_000));
      return { target: member.name, detail: 'SIGSTOP, SIGCONT' };
    }
    case 'kill-two-members': {
      // A majority gone: the one left answers, with no leader (reads served from its store, writes refused).
      const two = twoOf(members, random);
      await killMembers(two, random.int(2_000, 5_000));
      return { target: two.map((member) => member.name).join(' and '), detail: 'SIGKILL, restarted together; the third member kept running without a leader' };
    }
    case 'stop-two-members': {
      const two = twoOf(members, random);
      await stopMembers(two, random.int(2_000, 5_000));
      return { target: two.map((member) => member.name).join(' and '), detail: 'SIGSTOP, SIGCONT; the third member kept running without a leader' };
    }
    case 'kill-all':
      await killMembers(members, random.int(3_000, 6_000));
      return { target: 'all members', detail: 'SIGKILL, restarted' };
    case 'stop-all':
      await stopMembers(members, random.int(3_000, 6_000));
      return { target: 'all members', detail: 'SIGSTOP, SIGCONT' };
    case 'kill-proxy': {
      const proxy = random.pick(fleet.proxies);
      await killProxy(proxy, random.int(200, 2_000));
      return { target: proxy.name, detail: 'SIGKILL, restarted with etcd up' };
    }
    case 'restart-proxy-in-outage': {
      const proxy = random.pick(fleet.proxies);
      for (const member of members) member.signal('SIGKILL');
      await killProxy(proxy, random.int(200, 1_000));
      await sleep(random.int(2_000, 4_000));
      await Promise.all(members.map((member) => member.restart()));
      return { target: proxy.name, detail: 'all members SIGKILLed, the proxy SIGKILLed and restarted during the outage, members restarted' };
    }
    case 'compact-via-proxy': {
      const proxy = random.pick(fleet.proxies);
      return { target: proxy.name, detail: `compaction ${await compact(context, proxy.name, proxy.address)}` };
    }
    case 'compact-etcd': {
      const member = random.pick(members);
      return { target: member.name, detail: `compaction ${await compact(context, 'etcd', member.clientAddress)}` };
    }
    case 'leader-move':
      return moveLeader(members, random);
    case 'partition-member':
      return partitionMember(context);
    case 'disk-full':
      return fillDisk(context);
    case 'pause-proxy':
      return pauseProxy(context);
    case 'restore-etcd':
      return restoreEtcd(context, false);
    case 'restore-etcd-new-cluster':
      return restoreEtcd(context, true);
    case 'bucket-fallback':
      return bucketFallback(context);
  }
}

/** Faults one after another, each chosen by the seed, with quiet stretches between, until `running()` turns false. */
export async function injectFaults(context: Omit<FaultContext, 'compacted'>, faults: readonly FaultName[], running: () => boolean, log: (line: string) => void): Promise<void> {
  const state: FaultContext = { ...context, compacted: 0 };
  if (faults.length === 0) return;
  await sleep(2_000);
  while (running()) {
    const name = context.random.pick(faults);
    const record = context.recording.fault(name, '');
    const started = performance.now();
    const { target, detail } = await inject(name, state);
    context.recording.faults[context.recording.faults.indexOf(record)] = { ...record, target: `${target}: ${detail}`, until: performance.now() };
    log(`fault ${name} on ${target}: ${detail} (${Math.round(performance.now() - started)} ms)`);
    await sleep(context.random.int(1_500, 4_000));
  }
}
