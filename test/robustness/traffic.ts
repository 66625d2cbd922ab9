import { call } from '../support/raw-client';
import { KeepAliveStream } from '../support/keepalive-stream';
import type { KeepAliveRecord, RangeRequest } from './history';
import { KvClient } from './kv-client';
import type { Random } from './rng';
import type { Recording } from './recording';
import { followWatchChain } from './watch-chain';

/** The end of a prefix's range, as etcd's clients compute it. */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i -= 1) {
    if ((bytes[i] ?? 0xff) < 0xff) {
      const end = bytes.subarray(0, i + 1);
      end[i] = (end[i] ?? 0) + 1;
      return end.toString('utf8');
    }
  }
  return '\0';
}

/** The keys the traffic writes: under both mirrored prefixes, and outside them. */
export const KEY_PREFIXES = ['/apisix/routes/', '/apisix/upstreams/', '/service/cluster/', '/other/'] as const;

export interface ClientContext {
  readonly name: string;
  /** The proxy's name, or 'etcd'. */
  readonly via: string;
  /** Where to connect now (a client of etcd takes the next member after a failure). */
  readonly address: () => string;
  readonly random: Random;
  readonly recording: Recording;
  readonly running: () => boolean;
  readonly stopped: Promise<void>;
  /** Milliseconds between requests. */
  readonly pauseMs: number;
}

const pause = (ms: number, stopped: Promise<void>): Promise<unknown> => Promise.race([new Promise((resolve) => setTimeout(resolve, ms)), stopped]);

function randomKey(random: Random): string {
  return `${random.pick(KEY_PREFIXES)}${random.int(0, 11)}`;
}

function rangeOf(key: string, rangeEnd: string, extra: Partial<RangeRequest> = {}): RangeRequest {
  return { kind: 'range', key, rangeEnd, revision: 0, serializable: false, limit: 0, countOnly: false, keysOnly: false, ...extra };
}

/** A client of a fresh connection (reconnected after each failure to the address it is given then). */
class Connection {
  private kv: KvClient | null = null;

  constructor(private readonly context: ClientContext) {}

  get(): KvClient {
    this.kv ??= new KvClient(this.context.address());
    return this.kv;
  }

  failed(): void {
    this.kv?.close();
    this.kv = null;
  }

  close(): void {
    this.kv?.close();
  }
}

/** Random reads and writes: single keys and prefixes, serializable and linearizable, limits, deletes. */
export async function readerWriter(context: ClientContext): Promise<void> {
  const { random, recording } = context;
  const connection = new Connection(context);
  let n = 0;
  while (context.running()) {
    n += 1;
    const roll = random.next();
    const request =
      roll < 0.35
        ? ({ kind: 'put', key: randomKey(random), value: `${context.name}-${n}`, lease: '0' } as const)
        : roll < 0.4
          ? ({ kind: 'delete', key: randomKey(random), rangeEnd: '' } as const)
          : roll < 0.7
            ? rangeOf(randomKey(random), '', { serializable: random.chance(0.5) })
            : (() => {
                const prefix = random.pick(KEY_PREFIXES);
                return rangeOf(prefix, prefixEnd(prefix), { serializable: random.chance(0.5), limit: random.chance(0.3) ? random.int(1, 5) : 0, keysOnly: random.chance(0.1), countOnly: random.chance(0.1) });
              })();
    const record = await recording.send(context.name, context.via, connection.get(), request);
    if (!record.result.ok) connection.failed();
    await pause(context.pauseMs, context.stopped);
  }
  connection.close();
}

/**
 * A gateway: lists its prefix, watches it from the list's revision + 1,
 * lists again when the watch is compacted, resumes from the last revision +
 * 1 after any other failure.
 */
export async function gateway(context: ClientContext, prefix: string, progress: { readonly notify: boolean; readonly everyMs?: number } = { notify: false }): Promise<void> {
  const connection = new Connection(context);
  let chains = 0;
  while (context.running()) {
    const list = await context.recording.send(context.name, context.via, connection.get(), rangeOf(prefix, prefixEnd(prefix)));
    if (!list.result.ok) {
      connection.failed();
      await pause(200, context.stopped);
      continue;
    }
    chains += 1;
    await followWatchChain(
      {
        address: context.address,
        client: context.name,
        chain: `${context.name}/${chains}`,
        via: context.via,
        key: prefix,
        rangeEnd: prefixEnd(prefix),
        startRevision: list.result.revision + 1,
        progressNotify: progress.notify,
        ...(progress.everyMs === undefined ? {} : { progressEveryMs: progress.everyMs }),
        record: context.recording.watch,
        nextId: context.recording.nextId,
        running: context.running,
      },
      context.stopped,
    );
  }
  connection.close();
}

/** A leader loop as Patroni runs one: read the leader key, then take or renew it by compare-and-swap. */
export async function leader(context: ClientContext, key: string): Promise<void> {
  const connection = new Connection(context);
  let n = 0;
  while (context.running()) {
    n += 1;
    const read = await context.recording.send(context.name, context.via, connection.get(), rangeOf(key, ''));
    if (read.result.ok) {
      const modRevision = read.result.kvs?.[0]?.modRevision ?? 0;
      const swap = await context.recording.send(context.name, context.via, connection.get(), { kind: 'cas', key, ifModRevision: modRevision, value: `${context.name}-${n}`, lease: '0' });
      if (!swap.result.ok) connection.failed();
    } else connection.failed();
    await pause(context.pauseMs * 2, context.stopped);
  }
  connection.close();
}

/**
 * A controller as Kubernetes' lists: pages of `limit` keys at the first
 * page's revision, then reads at a past revision.
 */
export async function controller(context: ClientContext): Promise<void> {
  const connection = new Connection(context);
  while (context.running()) {
    let from = '/';
    let revision = 0;
    for (let page = 0; page < 20 && context.running(); page += 1) {
      const answer = await context.recording.send(context.name, context.via, connection.get(), rangeOf(from, '\0', { limit: 4, revision, serializable: revision === 0 && context.random.chance(0.5) }));
      if (!answer.result.ok) {
        connection.failed();
        break;
      }
      revision = revision === 0 ? answer.result.revision : revision;
      const last = answer.result.kvs?.at(-1)?.key;
      if (answer.result.more !== true || last === undefined) break;
      from = `${last}\0`;
    }
    if (revision > 10) {
      const past = revision - context.random.int(1, 10);
      const read = await context.recording.send(context.name, context.via, connection.get(), rangeOf('/apisix/', prefixEnd('/apisix/'), { revision: past }));
      if (!read.result.ok) connection.failed();
    }
    await pause(context.pauseMs * 3, context.stopped);
  }
  connection.close();
}

/** The TTL a lease holder asks for, in seconds. */
const LEASE_TTL_S = 3;
const KEEP_ALIVE_EVERY_MS = 1_000;

/**
 * A lease holder as Patroni keeps one: grants a lease through its proxy,
 * puts its member key under it, keeps it alive every second for a few
 * seconds (a new stream after a failed one), then stops and lets it expire.
 */
export async function leaseHolder(context: ClientContext): Promise<void> {
  let n = 0;
  while (context.running()) {
    n += 1;
    const kv = new KvClient(context.address());
    try {
      await holdOneLease(context, kv, `/service/lease/${context.name}-${n}`);
    } finally {
      kv.close();
    }
    await pause(context.pauseMs * 5, context.stopped);
  }
}

async function holdOneLease(context: ClientContext, kv: KvClient, key: string): Promise<void> {
  const granted = performance.now();
  const grant = await call<{ ID?: string; TTL?: string }>(kv.lease, 'LeaseGrant', { TTL: String(LEASE_TTL_S) }, { deadlineMs: 5_000 });
  if (grant.error !== null || grant.response?.ID === undefined) return;
  const leaseId = grant.response.ID;
  const put = await context.recording.send(context.name, context.via, kv, { kind: 'put', key, value: context.name, lease: leaseId });
  if (!put.result.ok) return;
  const keepAlives: KeepAliveRecord[] = [];
  const record = { type: 'lease', id: context.recording.nextId(), client: context.name, via: context.via, leaseId, key, ttl: Number(grant.response.TTL ?? LEASE_TTL_S), granted, keepAlives, stopped: null as number | null } as const;
  const holdUntil = performance.now() + context.random.int(3_000, 6_000);
  let stream: KeepAliveStream | null = null;
  try {
    while (context.running() && performance.now() < holdUntil) {
      stream ??= new KeepAliveStream(kv.lease);
      const sent = performance.now();
      const reply = await Promise.race([stream.ask(leaseId).catch(() => null), new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000))]);
      if (reply === null) {
        stream.cancel();
        stream = null;
      } else {
        const ttl = Number(reply.TTL ?? 0);
        keepAlives.push({ sent, answered: performance.now(), ttl });
        if (ttl <= 0) break;
      }
      await pause(KEEP_ALIVE_EVERY_MS, context.stopped);
    }
  } finally {
    stream?.cancel();
    context.recording.leases.push({ ...record, stopped: context.running() ? performance.now() : null });
  }
}
