import { connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import {
  credentials,
  loadPackageDefinition,
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type ClientDuplexStream,
  type StatusObject,
} from '@grpc/grpc-js';
import { serviceMethods } from '../../src/etcd/proto';
import { loadEtcdProto } from './etcd-proto';
import type { WireEvent, WireWatchResponse } from '../../src/etcd/wire';

// A raw Watch client for tests and benchmarks: one grpc-js bidi stream (or one
// raw HTTP/2 stream), requests written as etcd's wire messages, every
// response kept with the time it arrived. Nothing here knows how the proxy
// serves watches, so the same code talks to etcd and to the proxy.

// etcd's messages as proto-loader decodes them (int64 as decimal strings, bytes as Buffers): wire facts, shared with src/.
export type { WireEvent, WireHeader, WireKeyValue, WireWatchResponse } from '../../src/etcd/wire';

export interface WatchCreate {
  key: Buffer;
  range_end?: Buffer;
  start_revision?: number;
  progress_notify?: boolean;
  filters?: ('NOPUT' | 'NODELETE')[];
  prev_kv?: boolean;
  /** 0 (or absent) lets the server choose. */
  watch_id?: number;
  fragment?: boolean;
}

export interface Received {
  /** performance.now() when the message reached this process. */
  readonly at: number;
  readonly response: WireWatchResponse;
}

export interface StreamEnd {
  readonly code: number;
  readonly details: string;
}

export interface WatchClientOptions {
  /** Request metadata, e.g. { hasleader: 'true' } for etcd's require-leader watches. */
  readonly metadata?: Readonly<Record<string, string>>;
  /**
   * Its own TCP connection instead of grpc-js's shared one for the address
   * (benchmarks spread streams over connections like separate clients would).
   */
  readonly ownConnection?: boolean;
  /** Keep every response in `received` (default); benchmarks with many watchers turn it off and use onResponse. */
  readonly keep?: boolean;
  readonly onResponse?: (response: WireWatchResponse, at: number) => void;
  /** TLS credentials (default: plain text). */
  readonly credentials?: ChannelCredentials;
  /** The largest message the client takes, as clientv3's MaxCallRecvMsgSize (default: no limit). */
  readonly maxReceiveBytes?: number;
}

type Watchable = Client & { Watch(metadata: Metadata): ClientDuplexStream<object, WireWatchResponse> };
type WatchConstructor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: ChannelOptions) => Watchable;

let watchConstructor: WatchConstructor | undefined;

function constructor(): WatchConstructor {
  if (watchConstructor === undefined) {
    const root = loadPackageDefinition(loadEtcdProto()) as unknown as { etcdserverpb: { Watch: WatchConstructor } };
    watchConstructor = root.etcdserverpb.Watch;
  }
  return watchConstructor;
}

/** Wire form of a create request: int64 fields as decimal strings, as the proto-loader options expect. */
function createRequest(request: WatchCreate): object {
  const { start_revision, watch_id, ...rest } = request;
  return {
    create_request: {
      ...rest,
      ...(start_revision === undefined ? {} : { start_revision: String(start_revision) }),
      ...(watch_id === undefined ? {} : { watch_id: String(watch_id) }),
    },
  };
}

/** One Watch stream over grpc-js. Every wait has a timeout and names what it waited for. */
export class WatchClient {
  readonly received: Received[] = [];
  private readonly client: Watchable;
  private readonly stream: ClientDuplexStream<object, WireWatchResponse>;
  private readonly waiters = new Set<() => void>();
  private readonly keep: boolean;
  private createsSent = 0;
  private createdSeen = 0;
  private lastAt = performance.now();
  private endStatus: StreamEnd | null = null;
  private closedByUs = false;

  constructor(
    readonly address: string,
    options: WatchClientOptions = {},
  ) {
    const channelOptions: ChannelOptions = {
      // A replay of several large values is one message of many MiB (grpc-js refuses > 4 MiB by default).
      'grpc.max_receive_message_length': options.maxReceiveBytes ?? -1,
      ...(options.ownConnection === true ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
    };
    this.client = new (constructor())(address, options.credentials ?? credentials.createInsecure(), channelOptions);
    const metadata = new Metadata();
    for (const [name, value] of Object.entries(options.metadata ?? {})) metadata.set(name, value);
    this.keep = options.keep ?? true;
    this.stream = this.client.Watch(metadata);
    this.stream.on('data', (response: WireWatchResponse) => {
      const at = performance.now();
      this.lastAt = at;
      if (response.created === true) this.createdSeen += 1;
      if (this.keep) this.received.push({ at, response });
      options.onResponse?.(response, at);
      this.wake();
    });
    this.stream.on('status', (status: StatusObject) => {
      this.endStatus ??= { code: status.code, details: status.details };
      this.wake();
    });
    // The status event carries the outcome; without a listener an error event would throw.
    this.stream.on('error', () => undefined);
  }

  get responses(): WireWatchResponse[] {
    return this.received.map((r) => r.response);
  }

  /** How the stream ended (null while open); a cancel by this side is not reported. */
  get ended(): StreamEnd | null {
    return this.closedByUs ? null : this.endStatus;
  }

  create(request: WatchCreate): void {
    this.createsSent += 1;
    this.stream.write(createRequest(request));
  }

  /**
   * Sends the create requests (pipelined) and waits for as many `created`
   * answers: a server answers the creates of one stream in order, one each,
   * whether the watch was made or refused.
   */
  async createAll(requests: readonly WatchCreate[], timeoutMs = 10_000): Promise<WireWatchResponse[]> {
    const first = this.createdSeen;
    for (const request of requests) this.create(request);
    const target = this.createsSent;
    await this.until(`${requests.length} created answers`, () => this.createdSeen >= target, timeoutMs);
    return this.keep ? this.responses.filter((r) => r.created === true).slice(first, target) : [];
  }

  cancel(watchId: number | string): void {
    this.stream.write({ cancel_request: { watch_id: String(watchId) } });
  }

  progress(): void {
    this.stream.write({ progress_request: {} });
  }

  /** Resolves once `check` holds (checked now and after every response or the end); rejects after the timeout. */
  until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        if (check()) {
          done();
          resolve();
        } else if (this.endStatus !== null && !this.closedByUs) {
          done();
          reject(new Error(`watch stream to ${this.address} ended (${this.endStatus.code}: ${this.endStatus.details}) while waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} on ${this.address}; got ${this.received.length} responses`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
    });
  }

  /** The first response (at or after index `from`) that matches, waiting for it. */
  async next(what: string, match: (response: WireWatchResponse) => boolean, from = 0, timeoutMs = 10_000): Promise<WireWatchResponse> {
    let found: WireWatchResponse | undefined;
    await this.until(
      what,
      () => {
        found = this.responses.slice(from).find(match);
        return found !== undefined;
      },
      timeoutMs,
    );
    if (found === undefined) throw new Error(`unreachable: ${what}`);
    return found;
  }

  /** Waits until nothing has arrived for `quietMs`, counted from now at the earliest (at most `maxMs` in all). */
  async quiet(quietMs: number, maxMs = 15_000): Promise<void> {
    const since = performance.now();
    const deadline = since + maxMs;
    for (;;) {
      const idle = performance.now() - Math.max(this.lastAt, since);
      if (idle >= quietMs) return;
      if (performance.now() > deadline) throw new Error(`watch stream to ${this.address} never went quiet for ${quietMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, quietMs - idle + 5));
    }
  }

  /** Resolves with the stream's end status once the server ends it. */
  async end(timeoutMs = 10_000): Promise<StreamEnd> {
    await this.until('the stream to end', () => this.endStatus !== null, timeoutMs).catch((error: unknown) => {
      // until() rejects on the end itself; that is what we wait for here
      if (this.endStatus === null) throw error;
    });
    if (this.endStatus === null) throw new Error('unreachable: stream end');
    return this.endStatus;
  }

  /** Cancels the stream from the client side and closes its channel. */
  close(): void {
    this.closedByUs = this.endStatus === null;
    this.stream.cancel();
    this.client.close();
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** Events of every response, in order, as `[type key=value@mod_revision]` strings: handy in assertion messages. */
export function eventsOf(responses: readonly WireWatchResponse[], watchId?: string): WireEvent[] {
  return responses.filter((r) => watchId === undefined || (r.watch_id ?? '0') === watchId).flatMap((r) => r.events ?? []);
}

const watchMethod = (() => {
  const method = serviceMethods('etcdserverpb.Watch').Watch;
  if (method === undefined) throw new Error('Watch.Watch missing from proto/');
  return method;
})();

/** gRPC length-prefixed framing of one message. */
function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/**
 * A Watch stream over plain node:http2, for a client that stops reading:
 * the stream is paused and the connection's receive window kept at HTTP/2's
 * 64 KiB default, so a server can send only that much before its writes
 * wait. `resume()` reads again and decodes what was held back.
 */
export class StalledWatch {
  readonly responses: WireWatchResponse[] = [];
  private readonly session: ClientHttp2Session;
  private readonly stream: ClientHttp2Stream;
  private pending = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();
  private closed = false;
  private streamClosed = false;

  constructor(address: string) {
    // No automatic window growth: what the stream does not read stays unacknowledged.
    this.session = connect(`http://${address}`, { settings: { initialWindowSize: 65_535 } });
    this.session.on('error', () => undefined);
    this.stream = this.session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: '/etcdserverpb.Watch/Watch',
      [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
    });
    this.stream.on('error', () => undefined);
    this.stream.on('close', () => {
      this.streamClosed = true;
      this.wake();
    });
    this.stream.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 5) {
        const length = this.pending.readUInt32BE(1);
        if (this.pending.length < 5 + length) break;
        const message = this.pending.subarray(5, 5 + length);
        this.pending = this.pending.subarray(5 + length);
        this.responses.push(watchMethod.responseDeserialize(message) as WireWatchResponse);
      }
      this.wake();
    });
    this.stream.pause();
  }

  create(request: WatchCreate): void {
    this.stream.write(frame(watchMethod.requestSerialize(createRequest(request))));
  }

  /** Reads everything the server held back (and whatever follows). */
  resume(): void {
    this.stream.resume();
  }

  /** Resolves once `check` holds, rejects after the timeout. */
  until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        if (!check()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.responses.length} responses (stream closed: ${this.streamClosed})`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.close(h2.NGHTTP2_CANCEL);
    this.session.destroy();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
