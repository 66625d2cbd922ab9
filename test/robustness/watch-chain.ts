import { status } from '@grpc/grpc-js';
import { WatchClient, type WireEvent, type WireWatchResponse } from '../support/watch-client';
import type { ClientLogin } from './client-login';
import type { RecordedEvent, WatchDelivery, WatchEnd, WatchRecord } from './history';
import { recordedKv } from './kv-client';

/** How long a client waits before it opens the next stream of a chain after one failed. */
const RECONNECT_MS = 200;

export function recordedEvent(event: WireEvent): RecordedEvent {
  return { type: event.type === 'DELETE' ? 'delete' : 'put', kv: recordedKv(event.kv ?? {}) };
}

export interface WatchChainOptions {
  readonly address: () => string;
  readonly client: string;
  readonly chain: string;
  readonly via: string;
  readonly key: string;
  readonly rangeEnd: string;
  readonly startRevision: number;
  readonly progressNotify?: boolean;
  /** Asks the stream for its progress this often (as Kubernetes' watch cache does), when set. */
  readonly progressEveryMs?: number;
  /** With etcd's auth on: the client's login (a stream refused for its token logs in again before the next). */
  readonly login?: ClientLogin | null;
  /** Each response with events or progress, as it comes. */
  readonly onDelivery?: (delivery: WatchDelivery) => void;
  /** Every stream, recorded as it ends. */
  readonly record: (watch: WatchRecord) => void;
  readonly nextId: () => number;
  /** Asked after each failed stream: false ends the chain. */
  readonly running: () => boolean;
}

/**
 * A client's watch as gateways keep one: a stream from `startRevision`;
 * when it fails, another from the last revision received + 1, until the
 * run ends (the chain closes) or a stream ends as compacted (the caller
 * lists again and starts a new chain). Resolves with how the chain ended.
 */
export async function followWatchChain(options: WatchChainOptions, stopped: Promise<void>): Promise<WatchEnd> {
  let next = options.startRevision;
  for (;;) {
    const { end, last } = await oneStream(options, next, stopped);
    if (last !== null) next = last + 1;
    if (end.reason !== 'error' || !options.running()) return end;
    await Promise.race([new Promise((resolve) => setTimeout(resolve, RECONNECT_MS)), stopped]);
    if (!options.running()) return { at: performance.now(), reason: 'closed' };
  }
}

async function oneStream(options: WatchChainOptions, startRevision: number, stopped: Promise<void>): Promise<{ end: WatchEnd; last: number | null }> {
  const deliveries: WatchDelivery[] = [];
  let last: number | null = null;
  let ended: WatchEnd | null = null;
  let wake: () => void = () => undefined;
  const over = new Promise<void>((resolve) => (wake = resolve));
  const onResponse = (response: WireWatchResponse, at: number): void => {
    if (response.canceled === true) {
      const compactRevision = Number(response.compact_revision ?? 0);
      const reason = response.cancel_reason ?? '';
      // etcd cancels a watch whose token it no longer takes (a restarted etcd forgets them): log in again and resume.
      const tokenRefused = /auth token|user name is empty/.test(reason);
      if (tokenRefused) options.login?.failed(status.UNAUTHENTICATED, reason);
      ended ??= compactRevision > 0 ? { at, reason: 'compacted', compactRevision } : { at, reason: tokenRefused ? 'error' : 'canceled', message: reason };
      wake();
      return;
    }
    if (response.created === true && (response.events ?? []).length === 0) return;
    const events = (response.events ?? []).map(recordedEvent);
    const delivery = { at, revision: Number(response.header?.revision ?? 0), events };
    deliveries.push(delivery);
    options.onDelivery?.(delivery);
    const newest = events.at(-1)?.kv.modRevision;
    if (newest !== undefined) last = newest;
  };
  const opened = performance.now();
  /** The stream recorded as it ended. */
  const finish = (end: WatchEnd): { end: WatchEnd; last: number | null } => {
    options.record({ type: 'watch', id: options.nextId(), client: options.client, chain: options.chain, via: options.via, key: options.key, rangeEnd: options.rangeEnd, startRevision, opened, deliveries, end });
    return { end, last };
  };
  const address = options.address();
  const login = options.login ?? null;
  if (login !== null && !(await login.ensure(address))) {
    const end: WatchEnd = { at: performance.now(), reason: 'error', message: `could not log in as ${login.user}` };
    return finish(end);
  }
  const stream = new WatchClient(address, { keep: false, onResponse, metadata: login?.headers() ?? {} });
  stream.create({ key: Buffer.from(options.key), ...(options.rangeEnd === '' ? {} : { range_end: Buffer.from(options.rangeEnd) }), start_revision: startRevision, progress_notify: options.progressNotify === true });
  const asking = options.progressEveryMs === undefined ? null : setInterval(() => stream.progress(), options.progressEveryMs);
  const failure = stream.end(24 * 3600_000).then(
    (status) => {
      login?.failed(status.code, status.details);
      ended ??= { at: performance.now(), reason: 'error', message: `${status.code}: ${status.details}` };
    },
    () => undefined,
  );
  await Promise.race([over, failure, stopped]);
  ended ??= { at: performance.now(), reason: 'closed' };
  if (asking !== null) clearInterval(asking);
  stream.close();
  return finish(ended);
}
