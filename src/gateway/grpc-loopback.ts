import { EventEmitter } from 'node:events';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader } from 'node:http2';
import type { Duplex } from 'node:stream';
import { ServerCredentials, status, type Server as GrpcServer } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { duplexPair } from './duplex-pair';

/**
 * The gateway calls the proxy's own gRPC services, as etcd's gateway calls
 * etcd's, so every JSON request gets exactly the gRPC semantics (mirror
 * reads, read barrier, stale marker, write refusal, watch hub) by
 * construction. The calls travel over one in-memory HTTP/2 connection handed
 * to grpc-js through a connection injector: no port, no TLS to the proxy's
 * own listener (whose client-certificate rule the gateway could not meet),
 * and nothing another local process could reach.
 */
export interface GrpcLoopback {
  /** Starts a call: unary and streaming calls alike are one HTTP/2 stream. */
  call(path: string, options: LoopbackCallOptions): LoopbackCall;
  /** Ends the connection; calls still open end with UNAVAILABLE. */
  close(): void;
  /** How many in-memory connections it has opened so far. */
  connectionsOpened(): number;
}

export interface LoopbackCallOptions {
  /** Request metadata, lower-case keys (already filtered of transport headers). */
  readonly metadata: ReadonlyArray<readonly [string, string]>;
  /** A gRPC timeout as the grpc-timeout header spells it ("5S"), or null for none. */
  readonly timeout: string | null;
}

/** How a call ended. `trailersOnly`: the server answered with a status and nothing else. */
export interface CallStatus {
  readonly code: status;
  readonly details: string;
  readonly trailersOnly: boolean;
  /** Trailing metadata (non-reserved keys only). */
  readonly trailers: ReadonlyArray<readonly [string, string]>;
}

/** The largest message the loopback accepts from the gRPC server: far above what etcd sends. */
const MAX_MESSAGE_BYTES = 512 * 1024 * 1024;
/** A stalled HTTP client holds at most one stream window; the connection window is sized so it never blocks the others. */
const CONNECTION_WINDOW_BYTES = 2 ** 31 - 1;
const GRPC_FRAME_HEADER_BYTES = 5;
/**
 * Calls one connection carries before new ones go to a fresh connection.
 * Each call is an HTTP/2 stream, and a client's stream IDs run out after
 * 2^30 streams: days for a busy gateway, after which that connection takes
 * no new call at all.
 */
export const CALLS_PER_CONNECTION = 1_000_000_000;

export interface GrpcLoopbackOptions {
  /** Lowered by tests to see the connection change hands. */
  readonly callsPerConnection?: number;
}

export function createGrpcLoopback(server: GrpcServer, options: GrpcLoopbackOptions = {}): GrpcLoopback {
  const callsPerConnection = options.callsPerConnection ?? CALLS_PER_CONNECTION;
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  let session: ClientHttp2Session | null = null;
  let callsOnSession = 0;
  let connectionsOpened = 0;
  /** The current connection and those still finishing their calls. */
  const sessions = new Set<ClientHttp2Session>();
  let closed = false;

  const open = (): ClientHttp2Session => {
    if (session !== null && callsOnSession >= callsPerConnection) {
      // No new streams on it; its open calls (long watches too) finish there, then it goes.
      session.close();
      session = null;
    }
    if (session !== null && !session.closed && !session.destroyed) return session;
    callsOnSession = 0;
    const [clientEnd, serverEnd] = duplexPair();
    injector.injectConnection(serverEnd);
    const fresh = connect('http://etcd-cache-proxy.gateway', { createConnection: (): Duplex => clientEnd });
    fresh.on('connect', () => fresh.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
    // A session the server closed (GOAWAY on shutdown) takes no new streams; the next call opens another.
    const forget = (): void => {
      if (session === fresh) session = null;
    };
    fresh.on('goaway', forget);
    fresh.on('close', () => {
      forget();
      sessions.delete(fresh);
    });
    fresh.on('error', forget);
    session = fresh;
    sessions.add(fresh);
    connectionsOpened += 1;
    return fresh;
  };

  return {
    call(path, options) {
      const call = new LoopbackCall();
      if (closed) {
        queueMicrotask(() => call.fail(status.UNAVAILABLE, ETCD_ERRORS.shuttingDown.details));
        return call;
      }
      const headers: Record<string, string | string[]> = {
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
      };
      if (options.timeout !== null) headers['grpc-timeout'] = options.timeout;
      for (const [key, value] of options.metadata) {
        const existing = headers[key];
        headers[key] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
      }
      try {
        const connection = open();
        callsOnSession += 1;
        call.attach(connection.request(headers, { endStream: false }));
      } catch (error) {
        queueMicrotask(() => call.fail(status.UNAVAILABLE, `etcd-cache-proxy: gateway could not reach its gRPC server: ${error instanceof Error ? error.message : String(error)}`));
      }
      return call;
    },
    close() {
      closed = true;
      for (const open of sessions) open.destroy();
      sessions.clear();
      session = null;
      injector.destroy();
    },
    connectionsOpened: () => connectionsOpened,
  };
}

export interface LoopbackCallEvents {
  /** The server's response headers (its initial metadata), once, before any message. */
  headers: [IncomingHttpHeaders & IncomingHttpStatusHeader];
  message: [Buffer];
  /** Exactly once, last. */
  status: [CallStatus];
  /** The request side has room again after write() returned false. */
  drain: [];
}

/**
 * One call on the loopback: length-prefixed protobuf messages out, the same
 * back, and the status from the trailers (or from the only HEADERS frame of
 * a trailers-only answer).
 */
export class LoopbackCall extends EventEmitter<LoopbackCallEvents> {
  private stream: ClientHttp2Stream | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private finished = false;
  private headersSeen = false;
  private trailersOnlyHeaders: IncomingHttpHeaders | null = null;
  private cancelled = false;
  /** The gateway asked to stop reading (its HTTP client is slow). */
  private held = false;

  /** @internal */
  attach(stream: ClientHttp2Stream): void {
    this.stream = stream;
    // Node emits 'response' on the next tick, and data may arrive before it: read nothing until the headers are out.
    stream.pause();
    stream.on('response', (headers) => {
      const code = headers[':status'];
      if (code !== 200) {
        this.fail(status.UNKNOWN, `etcd-cache-proxy: gateway got HTTP ${String(code)} from its gRPC server`);
        stream.close(constants.NGHTTP2_CANCEL);
        return;
      }
      if (headers['grpc-status'] !== undefined) {
        this.trailersOnlyHeaders = headers;
        stream.resume(); // to its end, where the status is reported
        return;
      }
      this.headersSeen = true;
      this.emit('headers', headers);
      if (!this.held) stream.resume();
    });
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('trailers', (trailers) => this.finish(statusFrom(trailers, false)));
    stream.on('end', () => {
      if (this.trailersOnlyHeaders !== null) this.finish(statusFrom(this.trailersOnlyHeaders, true));
    });
    stream.on('drain', () => this.emit('drain'));
    stream.on('error', () => undefined); // the close below reports it
    stream.on('close', () => {
      if (this.cancelled) this.fail(status.CANCELLED, 'context canceled');
      else this.fail(status.UNAVAILABLE, 'etcd-cache-proxy: gateway lost its connection to the gRPC server');
    });
  }

  /** Sends one message; false when the server is not reading as fast (wait for 'drain'). */
  write(message: Buffer): boolean {
    if (this.stream === null || this.finished || this.stream.destroyed) return true;
    const frame = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
    frame.writeUInt8(0, 0);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, GRPC_FRAME_HEADER_BYTES);
    return this.stream.write(frame);
  }

  /** No more messages from this side (gRPC half-close). */
  end(): void {
    if (this.stream !== null && !this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  /** Abandons the call: the server sees a cancellation. */
  cancel(): void {
    if (this.finished) return;
    this.cancelled = true;
    if (this.stream !== null && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
    else this.fail(status.CANCELLED, 'context canceled');
  }

  /** Stops reading answers (the HTTP client is slow); HTTP/2 flow control then holds the server back. */
  pause(): void {
    this.held = true;
    this.stream?.pause();
  }

  resume(): void {
    this.held = false;
    if (this.headersSeen) this.stream?.resume();
  }

  get answeredHeaders(): boolean {
    return this.headersSeen;
  }

  /** @internal Ends the call with a status of the gateway's own. */
  fail(code: status, details: string): void {
    this.finish({ code, details, trailersOnly: !this.headersSeen, trailers: [] });
  }

  private finish(result: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.emit('status', result);
    if (this.stream !== null && !this.stream.destroyed && result.code !== status.OK) this.stream.close(constants.NGHTTP2_CANCEL);
  }

  private receive(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (!this.finished && this.pending.length >= GRPC_FRAME_HEADER_BYTES) {
      const compressed = this.pending.readUInt8(0);
      const length = this.pending.readUInt32BE(1);
      if (compressed !== 0 || length > MAX_MESSAGE_BYTES) {
        this.fail(status.INTERNAL, 'etcd-cache-proxy: gateway got a message it cannot read from its gRPC server');
        return;
      }
      if (this.pending.length < GRPC_FRAME_HEADER_BYTES + length) return;
      const message = this.pending.subarray(GRPC_FRAME_HEADER_BYTES, GRPC_FRAME_HEADER_BYTES + length);
      this.pending = this.pending.subarray(GRPC_FRAME_HEADER_BYTES + length);
      this.emit('message', Buffer.from(message));
    }
  }
}

const HTTP_HEADERS = new Set(['content-type', 'te', 'user-agent', 'date', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'host']);

/** Metadata keys that are gRPC's or HTTP's own, never the application's. */
export function isReservedMetadataKey(key: string): boolean {
  return key.startsWith(':') || key.startsWith('grpc-') || HTTP_HEADERS.has(key);
}

function statusFrom(headers: IncomingHttpHeaders, trailersOnly: boolean): CallStatus {
  const code = Number(headerValue(headers['grpc-status']) ?? status.UNKNOWN);
  const raw = headerValue(headers['grpc-message']) ?? '';
  let details = raw;
  try {
    details = decodeURIComponent(raw);
  } catch {
    // grpc-js percent-encodes only what it must; a stray '%' stays as sent
  }
  const trailers: [string, string][] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (isReservedMetadataKey(key) || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [String(value)]) trailers.push([key, item]);
  }
  return { code: Number.isInteger(code) ? (code as status) : status.UNKNOWN, details, trailersOnly, trailers };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
