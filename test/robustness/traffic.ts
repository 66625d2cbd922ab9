import { call } from '../support/raw-client';
import { KeepAliveStream } from '../support/keepalive-stream';
import { Metadata } from '@grpc/grpc-js';
import type { ClientLogin } from './client-login';
import type { KeepAliveRecord, OperationRecord, RangeRequest, Request } from './history';
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
  /** With etcd's auth on: who this client logs in as (null: auth off). */
  readonly login: ClientLogin | null;
}

const pause = (ms: number, stopped: Promise<void>): Promise<unknown> => Promise.race([new Promise((resolve) => setTimeout(resolve, ms)), stopped]);

function randomKey(random: Random): string {
  return `${random.pick(KEY_PREFIXES)}${random.int(0, 11)}`;
}

function rangeOf(key: string, rangeEnd: string, extra: Partial<RangeRequest> = {}): RangeRequest {
  return { kind: 'range', key, rangeEnd, revision: 0, serializable: false, limit: 0, countOnly: false, keysOnly: false, ...extra };
}

/**
 * A client's connection: a fresh one after each failure (to the address it
 * is given then), logged in first when etcd has auth on.
 */
class Connection {
  private kv: KvClient | null = null;

  constructor(private readonly context: ClientContext) {}

  get(): KvClient {
    this.kv ??= new KvClient(this.context.address(), this.context.login);
    return this.kv;
  }

  /** Sends and records `request`; null when the client could not log in (nothing was sent). */
  async send(request: Request): Promise<OperationRecord | null> {
    const kv = this.get();
    if (this.context.login !== null && !(await this.context.login.ensure(kv.address))) {
      this.failed();
      return null;
    }
    const record = await this.context.recording.send(this.context.name, this.context.via, kv, request);
    if (!record.result.ok) {
      this.context.login?.failed(record.result.code, record.result.message);
      this.failed();
    }
    return record;
  }

  failed(): void {
    this.kv?.close();
    this.kv = null;
  }

  close(): void {
    this.kv?.close();
  }
}

/** The keys only root may read or write, with etcd's auth on: the etcd client writes some, the proxies' clients try to read them. */
export const FORBIDDEN_PREFIX = '/zsecret/';

/** Random reads and writes: single keys and prefixes, serializable and linearizable, limits, deletes. */
export async function readerWriter(context: ClientContext): Promise<void> {
  const connection = new Connection(context);
  let n = 0;
  while (context.running()) {
    n += 1;
    const record = await connection.send(randomRequest(context, n));
    if (record === null) await pause(200, context.stopped);
    await pause(context.pauseMs, context.stopped);
  }
  connection.close();
}

function randomRequest(context: ClientContext, n: number): Request {
  const { random } = context;
  const roll = random.next();
  // With auth on: root (the etcd client) writes keys nobody else may see; the others try to read them.
  if (context.login !== null && roll < 0.05) {
    return context.login.user === 'root' ? { kind: 'put', key: `${FORBIDDEN_PREFIX}${random.int(0, 3)}`, value: `${context.name}-${n}`, lease: '0' } : rangeOf(FORBIDDEN_PREFIX, prefixEnd(FORBIDDEN_PREFIX), { serializable: random.chance(0.5) });
  }
  if (roll < 0.35) return { kind: 'put', key: randomKey(random), value: `${context.name}-${n}`, lease: '0' };
  if (roll < 0.4) return { kind: 'delete', key: randomKey(random), rangeEnd: '' };
  if (roll < 0.7) return rangeOf(randomKey(random), '', { serializable: random.chance(0.5) });
  const prefix = random.pick(KEY_PREFIXES);
  return rangeOf(prefix, prefixEnd(prefix), { serializable: random.chance(0.5), limit: random.chance(0.3) ? random.int(1, 5) : 0, keysOnly: random.chance(0.1), countOnly: random.chance(0.1) });
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
    const list = await connection.send(rangeOf(prefix, prefixEnd(prefix)));
    if (list === null || !list.result.ok) {
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
        login: context.login,
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
    const read = await connection.send(rangeOf(key, ''));
    if (read !== null && read.result.ok) {
      const modRevision = read.result.kvs?.[0]?.modRevision ?? 0;
      await connection.send({ kind: 'cas', key, ifModRevision: modRevision, value: `${context.name}-${n}`, lease: '0' });
    }
    await pause(context.pauseMs * 2, context.stopped);
  }
  connection.close();
}

/** What the controller lists: the traffic's keys (a user of etcd's auth may read no more). */
const LISTED = { key: '/apisix/', rangeEnd: prefixEnd('/service/') } as const;

/**
 * A controller as Kubernetes' lists: pages of `limit` keys at the first
 * page's revision, then reads at a past revision.
 */
export async function controller(context: ClientContext): Promise<void> {
  const connection = new Connection(context);
  while (context.running()) {
    let from: string = LISTED.key;
    let revision = 0;
    for (let page = 0; page < 20 && context.running(); page += 1) {
      const answer = await connection.send(rangeOf(from, LISTED.rangeEnd, { limit: 4, revision, serializable: revision === 0 && context.random.chance(0.5) }));
      if (answer === null || !answer.result.ok) break;
      revision = revision === 0 ? answer.result.revision : revision;
      const last = answer.result.kvs?.at(-1)?.key;
      if (answer.result.more !== true || last === undefined) break;
      from = `${last}\0`;
    }
    if (revision > 10) await connection.send(rangeOf('/apisix/', prefixEnd('/apisix/'), { revision: revision - context.random.int(1, 10) }));
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
    const connection = new Connection(context);
    try {
      await holdOneLease(context, connection, `/service/lease/${context.name}-${n}`);
    } finally {
      connection.close();
    }
    await pause(context.pauseMs * 5, context.stopped);
  }
}

async function holdOneLease(context: ClientContext, connection: Connection, key: string): Promise<void> {
  const kv = connection.get();
  if (context.login !== null && !(await context.login.ensure(kv.address))) return;
  const granted = performance.now();
  const metadata = (): Metadata => context.login?.metadata() ?? new Metadata();
  const grant = await call<{ ID?: string; TTL?: string }>(kv.lease, 'LeaseGrant', { TTL: String(LEASE_TTL_S) }, { deadlineMs: 5_000, metadata: metadata() });
  if (grant.error !== null || grant.response?.ID === undefined) {
    if (grant.error !== null) context.login?.failed(grant.error.code, grant.error.details);
    return;
  }
  const leaseId = grant.response.ID;
  const put = await connection.send({ kind: 'put', key, value: context.name, lease: leaseId });
  if (put === null || !put.result.ok) return;
  const keepAlives: KeepAliveRecord[] = [];
  const record = { type: 'lease', id: context.recording.nextId(), client: context.name, via: context.via, leaseId, key, ttl: Number(grant.response.TTL ?? LEASE_TTL_S), granted, keepAlives, stopped: null as number | null } as const;
  const holdUntil = performance.now() + context.random.int(3_000, 6_000);
  let stream: KeepAliveStream | null = null;
  let lastSent: number | null = null;
  try {
    while (context.running() && performance.now() < holdUntil) {
      stream ??= new KeepAliveStream(connection.get().lease, context.login?.headers() ?? {});
      const sent = performance.now();
      lastSent = sent;
      const reply = await Promise.race([stream.ask(leaseId).catch(() => null), new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000))]);
      if (reply === null) {
        if (stream.ended !== null) context.login?.failed(stream.ended.code, stream.ended.details);
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
    context.recording.leases.push({ ...record, stopped: context.running() ? performance.now() : null, lastSent });
  }
}
