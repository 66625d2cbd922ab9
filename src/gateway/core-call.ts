import { EventEmitter } from 'node:events';
import { Metadata, status, type Deadline, type StatusObject } from '@grpc/grpc-js';
import type { DuplexCall, ServerStreamCall, UnaryCall, UnaryCallback, UnaryHandler } from '../core/call';
import { messagesOf } from '../etcd/grpc-frame';

/**
 * The JSON gateway's side of a core call: the shapes of core/call.ts built
 * around an HTTP request instead of an HTTP/2 stream, so the gateway calls
 * the same handlers the gRPC server does, in process and without encoding
 * anything twice.
 */
export interface CoreCallOptions {
  /** Request metadata, lower-case keys (already filtered of transport headers). */
  readonly metadata: ReadonlyArray<readonly [string, string]>;
  /** Milliseconds the call may take (Grpc-Timeout), negative when already past, null for no deadline. */
  readonly timeoutMs: number | null;
  /** The HTTP client's address ("host:port"), as a gRPC call's getPeer() gives it. */
  readonly peer?: string;
}

/** How a call ended, as the gateway reports it. */
export interface CallStatus {
  readonly code: status;
  readonly details: string;
  /** The call ended before it sent any response metadata or message (gRPC's trailers-only answer). */
  readonly trailersOnly: boolean;
  /** Trailing metadata, application keys only. */
  readonly trailers: ReadonlyArray<readonly [string, string]>;
}

/** etcd's gateway (Go's context package) names a passed deadline so. */
export const DEADLINE_DETAILS = 'context deadline exceeded';

const HTTP_HEADERS = new Set(['content-type', 'te', 'user-agent', 'date', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'host']);

/** Metadata keys that are gRPC's or HTTP's own, never the application's. */
export function isReservedMetadataKey(key: string): boolean {
  return key.startsWith(':') || key.startsWith('grpc-') || HTTP_HEADERS.has(key);
}

/** A Metadata's application entries as [key, value] pairs (binary values as base64, as grpc-gateway writes them). */
export function metadataEntries(metadata: Metadata | undefined): [string, string][] {
  const entries: [string, string][] = [];
  if (metadata === undefined) return entries;
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    if (isReservedMetadataKey(key)) continue;
    for (const value of values) entries.push([key, Buffer.isBuffer(value) ? value.toString('base64') : String(value)]);
  }
  return entries;
}

function requestMetadata(options: CoreCallOptions): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of options.metadata) metadata.add(key, key.endsWith('-bin') ? Buffer.from(value, 'base64') : value);
  return metadata;
}

function statusOf(error: Partial<StatusObject> | { code?: number; details?: string; metadata?: Metadata }, trailersOnly: boolean): CallStatus {
  const code = typeof error.code === 'number' ? (error.code as status) : status.UNKNOWN;
  return { code, details: error.details ?? '', trailersOnly, trailers: metadataEntries(error.metadata) };
}

/** What one unary call brought back. */
export interface UnaryOutcome {
  /** Response metadata the handler sent (the stale mark), or null when it sent none. */
  readonly headers: Metadata | null;
  readonly message: Buffer | null;
  readonly status: CallStatus;
}

class GatewayUnaryCall extends EventEmitter implements UnaryCall {
  readonly metadata: Metadata;
  private readonly peer: string;
  headers: Metadata | null = null;

  constructor(
    readonly request: Buffer,
    options: CoreCallOptions,
    private readonly deadline: number,
  ) {
    super();
    this.metadata = requestMetadata(options);
    this.peer = options.peer ?? '';
  }

  getPeer(): string {
    return this.peer;
  }

  getDeadline(): Deadline {
    return this.deadline;
  }

  sendMetadata(metadata: Metadata): void {
    if (this.headers === null) this.headers = metadata.clone();
    else this.headers.merge(metadata);
  }
}

/** Milliseconds since the epoch; Infinity for none (grpc-js's Deadline, as a number). */
function deadlineOf(options: CoreCallOptions): number {
  return options.timeoutMs === null ? Infinity : Date.now() + Math.max(0, options.timeoutMs);
}

/**
 * Runs one unary handler. `abandon` is called by the gateway when its HTTP
 * client leaves: the handler sees a cancellation, and the outcome reports
 * CANCELLED.
 */
export function callUnary(handler: UnaryHandler, request: Buffer, options: CoreCallOptions): { outcome: Promise<UnaryOutcome>; abandon(): void } {
  const deadline = deadlineOf(options);
  const call = new GatewayUnaryCall(request, options, deadline);
  let settle: (outcome: UnaryOutcome) => void = () => undefined;
  const outcome = new Promise<UnaryOutcome>((resolve) => (settle = resolve));
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  const finish = (result: UnaryOutcome): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    settle(result);
  };
  const stop = (code: status, details: string): void => {
    if (done) return;
    finish({ headers: call.headers, message: null, status: { code, details, trailersOnly: call.headers === null, trailers: [] } });
    call.emit('cancelled');
  };
  if (deadline !== Infinity) {
    timer = setTimeout(() => stop(status.DEADLINE_EXCEEDED, DEADLINE_DETAILS), Math.max(0, deadline - Date.now()));
  }
  const callback: UnaryCallback = (error, value) => {
    if (error !== null && error !== undefined) finish({ headers: call.headers, message: null, status: statusOf(error, call.headers === null) });
    else finish({ headers: call.headers, message: value ?? Buffer.alloc(0), status: { code: status.OK, details: '', trailersOnly: false, trailers: [] } });
  };
  if (options.timeoutMs !== null && options.timeoutMs <= 0) stop(status.DEADLINE_EXCEEDED, DEADLINE_DETAILS);
  else handler(call, callback);
  return { outcome, abandon: () => stop(status.CANCELLED, 'context canceled') };
}

/** Where a gateway stream's answers go: the HTTP response, in etcd's JSON stream form. */
export interface StreamOutput {
  /** Response metadata, once, before the first message or with the status. */
  headers(metadata: Metadata): void;
  /** One answer; false when the HTTP client is not keeping up (then 'drain' is emitted on the call). */
  message(bytes: Buffer, done?: () => void): boolean;
  /** Exactly once, last. */
  status(result: CallStatus): void;
}

/**
 * A streaming call (Watch, LeaseKeepAlive, Snapshot) for the core: requests
 * are pushed in by the gateway as the body delivers them, answers go to the
 * output. The call ends once: with the handler's end() or error, the client's
 * departure (cancel()), or the deadline.
 */
export class GatewayStreamCall extends EventEmitter implements DuplexCall, ServerStreamCall {
  readonly metadata: Metadata;
  private sentHeaders = false;
  private ended = false;
  private paused = false;
  private readonly held: Buffer[] = [];
  private halfClosed = false;
  private readonly deadline: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    options: CoreCallOptions,
    private readonly output: StreamOutput,
    /** The request of a server-streaming call; empty for bidirectional ones. */
    readonly request: Buffer = Buffer.alloc(0),
  ) {
    super();
    this.metadata = requestMetadata(options);
    this.deadline = deadlineOf(options);
    // emit('error', status) is how a handler ends the call with a status; it must never throw for want of a listener.
    this.on('error', (error: unknown) => this.close(statusOf(isStatusLike(error) ? error : {}, !this.sentHeaders)));
    if (this.deadline !== Infinity) {
      this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadline - Date.now()));
      this.timer.unref();
    }
  }

  getDeadline(): Deadline {
    return this.deadline;
  }

  sendMetadata(metadata: Metadata): void {
    if (this.sentHeaders || this.ended) return;
    this.sentHeaders = true;
    this.output.headers(metadata);
  }

  write(message: Buffer, done?: () => void): boolean {
    if (this.ended) return true;
    if (!this.sentHeaders) this.sendMetadata(new Metadata());
    // A batch of answers (batchMessages) is written as its messages, one JSON object each.
    const batch = messagesOf(message);
    if (batch === undefined) return this.output.message(message, done);
    let flushed = true;
    batch.forEach((each, index) => {
      flushed = this.output.message(each, index === batch.length - 1 ? done : undefined) && flushed;
    });
    return flushed;
  }

  end(trailers?: Metadata): void {
    if (!this.sentHeaders && !this.ended) this.sendMetadata(new Metadata());
    this.close({ code: status.OK, details: '', trailersOnly: false, trailers: metadataEntries(trailers) });
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    while (!this.paused && this.held.length > 0) {
      const next = this.held.shift();
      if (next !== undefined) this.emit('data', next);
    }
    if (!this.paused && this.halfClosed && this.held.length === 0) this.emit('end');
    return this;
  }

  /** A request from the body, for a bidirectional call. */
  push(message: Buffer): void {
    if (this.ended || this.halfClosed) return;
    if (this.paused) this.held.push(message);
    else this.emit('data', message);
  }

  /** The body ended: no more requests (gRPC's half-close). */
  finishRequests(): void {
    if (this.ended || this.halfClosed) return;
    this.halfClosed = true;
    if (!this.paused && this.held.length === 0) this.emit('end');
  }

  /** The HTTP client went away: the handler sees a cancellation and nothing more is written. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.emit('cancelled');
  }

  get finished(): boolean {
    return this.ended;
  }

  private expire(): void {
    if (this.ended) return;
    this.close({ code: status.DEADLINE_EXCEEDED, details: DEADLINE_DETAILS, trailersOnly: !this.sentHeaders, trailers: [] });
    this.emit('cancelled');
  }

  private close(result: CallStatus): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.output.status(result);
  }
}

function isStatusLike(value: unknown): value is Partial<StatusObject> {
  return typeof value === 'object' && value !== null && 'code' in value;
}
