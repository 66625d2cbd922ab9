import type { Deadline, Metadata, ServerErrorResponse, StatusObject } from '@grpc/grpc-js';

/**
 * A call as the core sees it, whichever transport brought it: grpc-js's
 * server calls have this shape already, and the JSON gateway builds the same
 * shape around an HTTP request. Handlers see only what is listed here, so
 * every rule they apply (mirror reads, write refusal, the stale mark,
 * metrics) holds for both transports by construction.
 */
interface CallBase {
  /** Request metadata: the auth `token`, `hasleader`, anything a client sends etcd. */
  readonly metadata: Metadata;
  /** The client's deadline (Infinity: none); the transport ends the call when it passes. */
  getDeadline(): Deadline;
  /** Response metadata, sent ahead of the first message (or the status). */
  sendMetadata(metadata: Metadata): void;
}

/** A unary call: one request, one answer or error, through the callback. */
export interface UnaryCall extends CallBase {
  readonly request: Buffer;
  /** The client's address ("host:port"), where the transport knows it: offline logins are limited per source. */
  getPeer?(): string;
  /** 'cancelled': the client went away or the deadline passed; the answer is no longer wanted. */
  on(event: 'cancelled', listener: () => void): this;
}

/** The answer of a unary call: the response bytes, or an error status (its metadata are the trailers). */
export type UnaryCallback = (error: ServerErrorResponse | Partial<StatusObject> | null, value?: Buffer | null) => void;

export type UnaryHandler = (call: UnaryCall, callback: UnaryCallback) => void;

/**
 * What a handler writes answers to. `end()` closes it with OK;
 * `emit('error', status)` closes it with that status (grpc-js's convention).
 */
export interface ResponseStream extends CallBase {
  /**
   * False when the client is not keeping up; 'drain' follows once it has.
   * `done` runs once the message has left. `message` may be a batch of
   * messages (etcd/grpc-frame.ts batchMessages), which both transports write
   * as its messages in order.
   */
  write(message: Buffer, done?: () => void): boolean;
  /** Ends the call with OK; `trailers` go with the status. */
  end(trailers?: Metadata): void;
  emit(event: 'error', status: Partial<StatusObject>): boolean;
  /** 'cancelled': the client went away. 'drain': writing may go on. 'error': the call ended with a status. */
  on(event: 'cancelled' | 'drain', listener: () => void): this;
  on(event: 'error', listener: (error: unknown) => void): this;
  once(event: 'drain', listener: () => void): this;
}

/** A server-streaming call (Maintenance.Snapshot): one request, many answers. */
export interface ServerStreamCall extends ResponseStream {
  readonly request: Buffer;
}

/** A bidirectional call (Watch, LeaseKeepAlive): requests arrive as 'data' until 'end'. */
export interface DuplexCall extends ResponseStream {
  on(event: 'cancelled' | 'drain' | 'end', listener: () => void): this;
  on(event: 'data', listener: (message: Buffer) => void): this;
  on(event: 'error', listener: (error: unknown) => void): this;
  /** Stops 'data' until resume(): the handler cannot take more requests yet. */
  pause(): this;
  resume(): this;
}

export type ServerStreamHandler = (call: ServerStreamCall) => void;
export type DuplexHandler = (call: DuplexCall) => void;

/** One RPC of the core: its gRPC path and its handler, by kind. */
export type CoreMethod =
  | { readonly path: string; readonly kind: 'unary'; readonly handler: UnaryHandler }
  | { readonly path: string; readonly kind: 'server-stream'; readonly handler: ServerStreamHandler }
  | { readonly path: string; readonly kind: 'bidi'; readonly handler: DuplexHandler };

/** One etcd service of the core: every method of its .proto, by name. */
export interface CoreService {
  /** "etcdserverpb.KV" */
  readonly name: string;
  readonly methods: ReadonlyMap<string, CoreMethod>;
}
