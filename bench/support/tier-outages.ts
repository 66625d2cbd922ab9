// The outages bench/fleet.ts --tiers puts its regional tier through, in
// order, with etcd up throughout:
//
// 1. one regional SIGKILLed: its edges go on through the others (their
//    gateways first, their own mirrors after);
// 2. every other regional SIGKILLed too, so the edges have no upstream at
//    all: their gateways' watches should stay open, their mirrors answer
//    reads (marked stale), and writes through them be refused at once;
// 3. every regional started again on its own port and data dir: each serves
//    its mirror from disk and resumes its etcd watch where it stopped, and
//    the edges theirs on it, without listing the keyspace again.
//
// Each step reads what etcd counted meanwhile (etcd-counters.ts).
import { status, type ServiceError } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { ETCD_ERRORS } from '../../src/etcd/errors';
import { STALE_HEADER } from '../../src/etcd/metadata';
import type { EtcdCluster } from '../../test/support/etcd-cluster';
import { call, rawClients } from '../../test/support/raw-client';
import { countersOf, difference, type EtcdCounters } from './etcd-counters';
import type { GatewayWatch } from './gateway-watch';
import { metricOf } from './proxy-metrics';
import type { Regionals } from './tiers';

/** "Refused at once": how the contract bounds a write refused for a lost upstream (well under 100 ms). */
const FAST_REFUSAL_MS = 100;
/** How long the edges get to notice that every regional is gone. */
const REFUSAL_WAIT_MS = 60_000;
const WRITE_POLL_MS = 100;
/** The least an outage of every regional lasts, as the bench's etcd outage does: long enough for every edge to notice it. */
const OUTAGE_MS = 5_000;
const ARRIVAL_TIMEOUT_MS = 120_000;
const MIRROR_POLL_MS = 200;
/** A key no gateway watches for, written through the edges while they should refuse: never the value a key already holds (that one an edge may acknowledge from its mirror). */
const REFUSED_KEY = '/apisix/routes/fleet-refused';

/** One gateway machine as the tier steps see it: its edge proxy and the gateway watching through it. */
export interface TierEdge {
  readonly gateway: GatewayWatch;
  /** "127.0.0.1:PORT" of the edge proxy. */
  readonly address: string;
  /** Times the edge listed the keyspace again. */
  relists(): Promise<number | null>;
}

export interface TierSteps {
  readonly cluster: EtcdCluster;
  readonly regionals: Regionals;
  readonly edges: readonly TierEdge[];
  /** The key the gateways watch for writes. */
  readonly watchedKey: string;
  /** Writes `value` to etcd at `watchedKey`; resolves with performance.now() when it was sent. */
  writeToEtcd(value: string): Promise<number>;
}

/** A step's outcome: per gateway, ms from the step's start until it had the step's write, and what etcd counted meanwhile. */
export interface Spread {
  readonly arrivals: number[];
  readonly etcd: EtcdCounters;
}

export interface OneRegionalDown extends Spread {
  /**
   * Per edge, ms from the kill until its own mirror had the write (to within
   * MIRROR_POLL_MS). A gateway can have it sooner: an edge whose mirror is
   * behind passes its gateway's watch on to the regional meanwhile.
   */
  readonly mirrors: number[];
}

export interface AllRegionalsDown {
  /** Per edge, ms from the kill until a write through it was first refused at once (Infinity: not within the wait). */
  readonly refusedFastAfter: number[];
  /** What the writes through the edges got before that, by "code details", counted. */
  readonly earlierAnswers: Map<string, number>;
  /** Edges that answered a serializable Range of the watched key, of those the ones that marked it stale, and the ones that answered the last value written. */
  readonly readsAnswered: number;
  readonly readsStale: number;
  readonly readsCurrent: number;
  readonly slowestReadMs: number;
  /** What the other reads got, by "code details" (or the value they answered), counted. */
  readonly readsOtherwise: Map<string, number>;
  /** Gateways whose watch ended while every regional was down. */
  readonly watchesEnded: number;
}

export interface AllRegionalsBack extends Spread {
  /** Regionals that listed etcd's keyspace again after their restart, and edges that listed their regionals'. */
  readonly regionalsRelisted: number;
  readonly edgesRelisted: number;
  /** Gateways whose watch ended from the restart until they had the new write. */
  readonly watchesEnded: number;
}

const arrivals = (edges: readonly TierEdge[], value: string, from: number): Promise<number[]> =>
  Promise.all(edges.map(async (edge) => (await edge.gateway.whenSeen(value, ARRIVAL_TIMEOUT_MS)) - from));

const reopens = (edges: readonly TierEdge[]): number[] => edges.map((edge) => edge.gateway.reopens);
const endedSince = (edges: readonly TierEdge[], before: readonly number[]): number =>
  edges.filter((edge, i) => edge.gateway.reopens > (before[i] ?? 0)).length;

/**
 * Regional 0 SIGKILLed: until every gateway has a write made after, then
 * until every edge's mirror has it too (so that the next step starts from
 * mirrors that hold everything their gateways were sent).
 */
export async function killOneRegional(steps: TierSteps): Promise<OneRegionalDown> {
  const before = await countersOf(steps.cluster);
  steps.regionals.kill(0);
  const killed = performance.now();
  await steps.writeToEtcd('after-regional');
  const spread = await arrivals(steps.edges, 'after-regional', killed);
  const etcd = difference(await countersOf(steps.cluster), before);
  const revision = await revisionOf(steps.cluster, steps.watchedKey);
  const mirrors = await Promise.all(steps.edges.map((edge) => untilMirrorHas(edge.address, revision, killed)));
  return { arrivals: spread, etcd, mirrors };
}

/** The revision `key` was last written at, as etcd answers a linearizable read. */
async function revisionOf(cluster: EtcdCluster, key: string): Promise<number> {
  for (const member of cluster.members) {
    const clients = rawClients(member.clientAddress);
    const outcome = await call<{ kvs?: { mod_revision?: string }[] }>(clients.kv, 'Range', { key: Buffer.from(key) }, { deadlineMs: 3_000 });
    clients.close();
    if (outcome.error === null) return Number(outcome.response?.kvs?.[0]?.mod_revision ?? 0);
  }
  throw new Error(`no member answered a read of ${key}`);
}

/** ms from `from` until the mirror of the proxy at `address` reached `revision` (Infinity: not within the wait). */
async function untilMirrorHas(address: string, revision: number, from: number): Promise<number> {
  while (performance.now() - from < ARRIVAL_TIMEOUT_MS) {
    if ((await metricOf(address, 'etcd_cache_proxy_mirror_revision')) >= revision) return performance.now() - from;
    await sleep(MIRROR_POLL_MS);
  }
  return Number.POSITIVE_INFINITY;
}

/**
 * Every regional still alive SIGKILLed: the time until each edge refuses a
 * write at once, then a read through each, then the gateways' watches.
 * `lastValue` is the watched key's value when the regionals went.
 */
export async function killAllRegionals(steps: TierSteps, lastValue: string): Promise<AllRegionalsDown> {
  const watchesBefore = reopens(steps.edges);
  for (let i = 0; i < steps.regionals.count; i += 1) steps.regionals.kill(i);
  const killed = performance.now();
  const earlierAnswers = new Map<string, number>();
  const refusedFastAfter = await Promise.all(steps.edges.map((edge) => untilRefusedFast(edge.address, killed, earlierAnswers)));
  let readsAnswered = 0;
  let readsStale = 0;
  let readsCurrent = 0;
  let slowestReadMs = 0;
  const readsOtherwise = new Map<string, number>();
  for (const edge of steps.edges) {
    const clients = rawClients(edge.address);
    const sent = performance.now();
    const outcome = await call<{ kvs?: { value?: Buffer }[] }>(clients.kv, 'Range', { key: Buffer.from(steps.watchedKey), serializable: true }, { deadlineMs: 5_000 });
    slowestReadMs = Math.max(slowestReadMs, performance.now() - sent);
    clients.close();
    if (outcome.error !== null) {
      readsOtherwise.set(answerOf(outcome.error), (readsOtherwise.get(answerOf(outcome.error)) ?? 0) + 1);
      continue;
    }
    readsAnswered += 1;
    if (outcome.headers?.get(STALE_HEADER)[0] === 'true') readsStale += 1;
    const value = outcome.response?.kvs?.[0]?.value?.toString();
    if (value === lastValue) readsCurrent += 1;
    else readsOtherwise.set(`value ${value ?? '(none)'}`, (readsOtherwise.get(`value ${value ?? '(none)'}`) ?? 0) + 1);
  }
  await sleep(Math.max(0, OUTAGE_MS - (performance.now() - killed)));
  return { refusedFastAfter, earlierAnswers, readsAnswered, readsStale, readsCurrent, slowestReadMs, readsOtherwise, watchesEnded: endedSince(steps.edges, watchesBefore) };
}

/** Writes through the edge at `address` until one is refused at once for a lost upstream: ms from `killed` then. */
async function untilRefusedFast(address: string, killed: number, earlierAnswers: Map<string, number>): Promise<number> {
  const clients = rawClients(address);
  try {
    while (performance.now() - killed < REFUSAL_WAIT_MS) {
      const sent = performance.now();
      const outcome = await call(clients.kv, 'Put', { key: Buffer.from(REFUSED_KEY), value: Buffer.from('refused?') }, { deadlineMs: 5_000 });
      const answered = performance.now();
      const lost = outcome.error?.code === status.UNAVAILABLE && outcome.error.details === ETCD_ERRORS.upstreamLost.details;
      if (lost && answered - sent < FAST_REFUSAL_MS) return answered - killed;
      const seen = outcome.error === null ? 'OK' : `${answerOf(outcome.error)}${lost ? ' (slow)' : ''}`;
      earlierAnswers.set(seen, (earlierAnswers.get(seen) ?? 0) + 1);
      await sleep(WRITE_POLL_MS);
    }
    return Number.POSITIVE_INFINITY;
  } finally {
    clients.close();
  }
}

/** An error as the report shows it: its code and the start of its message, addresses left out (so that like errors count together). */
function answerOf(error: ServiceError): string {
  const details = error.details.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'ADDRESS').replace(/[.\s]*Resolution note:\s*$/, '');
  return `${status[error.code] ?? error.code} ${details.slice(0, 100)}`;
}

/** Every regional started again on its port and data dir: until every gateway has a write made to etcd after. */
export async function restartAllRegionals(steps: TierSteps): Promise<AllRegionalsBack> {
  const before = await countersOf(steps.cluster);
  const edgeRelistsBefore = await Promise.all(steps.edges.map((edge) => edge.relists()));
  const watchesBefore = reopens(steps.edges);
  await Promise.all(Array.from({ length: steps.regionals.count }, (_, i) => steps.regionals.restart(i)));
  const restarted = performance.now();
  await steps.writeToEtcd('after-regionals');
  const spread = await arrivals(steps.edges, 'after-regionals', restarted);
  const etcd = difference(await countersOf(steps.cluster), before);
  // A restarted regional counts from zero: any list it made is this step's.
  const regionalRelists = await Promise.all(steps.regionals.live().map((address) => metricOf(address, 'etcd_cache_proxy_mirror_relists_total')));
  const edgeRelistsAfter = await Promise.all(steps.edges.map((edge) => edge.relists()));
  return {
    arrivals: spread,
    etcd,
    regionalsRelisted: regionalRelists.filter((n) => n > 0).length,
    edgesRelisted: edgeRelistsAfter.filter((n, i) => (n ?? 0) > (edgeRelistsBefore[i] ?? 0)).length,
    watchesEnded: endedSince(steps.edges, watchesBefore),
  };
}
