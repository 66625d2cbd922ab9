import { Metadata } from '@grpc/grpc-js';
import type { ClientLogin } from './client-login';
import type { ClusterMember } from '../support/etcd-cluster';
import type { EtcdRecorder } from './etcd-recorder';
import type { Fleet, FleetProxy } from './fleet';
import { KvClient } from './kv-client';
import type { Random } from './rng';
import type { Recording } from './recording';

/** The faults a run may inject (--faults picks some). */
export const FAULTS = ['kill-member', 'stop-member', 'kill-all', 'stop-all', 'kill-proxy', 'restart-proxy-in-outage', 'compact-via-proxy', 'compact-etcd'] as const;
export type FaultName = (typeof FAULTS)[number];

/** How far below etcd's history watch a compaction stays (that watch must never be compacted). */
const COMPACTION_MARGIN = 25;

interface FaultContext {
  readonly fleet: Fleet;
  /** With etcd's auth on: root's login (compactions are root's). */
  readonly login: ClientLogin | null;
  readonly random: Random;
  readonly recording: Recording;
  readonly recorder: EtcdRecorder;
  /** The highest revision compacted so far. */
  compacted: number;
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
  const revision = context.recorder.revision - COMPACTION_MARGIN;
  if (revision <= context.compacted) return `skipped (etcd at ${context.recorder.revision}, compacted at ${context.compacted})`;
  const login = context.login;
  const client = new KvClient(address, () => login?.metadata() ?? new Metadata());
  try {
    if (login !== null && !(await login.ensure(address))) return `at ${revision} not asked: root could not log in`;
    const record = await context.recording.send('compactor', via, client, { kind: 'compact', revision });
    if (record.result.ok) context.compacted = revision;
    else login?.failed(record.result.code, record.result.message);
    return record.result.ok ? `at ${revision}` : `at ${revision} failed: ${record.result.message}`;
  } finally {
    client.close();
  }
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
