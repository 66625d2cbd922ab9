import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions } from 'node:tls';
import type { Server as HttpServer } from 'node:http';
import type { HostPort } from '../etcd/endpoint';
import type { GrpcConnections } from '../grpc/server';
import type { Logger } from '../log';
import { listenOn } from './listen';

/** Every HTTP/2 connection (gRPC over h2c) opens with this preface (RFC 9113, 3.4). */
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A client that opens a connection and says nothing is dropped after this long. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

export type Protocol = 'grpc' | 'http1' | 'undecided';

/**
 * Decides a connection's protocol from its first bytes: the HTTP/2 preface
 * means gRPC, anything else is served as HTTP/1.1 (whose request line can
 * never start with "PRI * HTTP/2.0"). Needs more bytes while the data seen so
 * far is still a prefix of the preface.
 */
export function sniffProtocol(firstBytes: Buffer): Protocol {
  const seen = firstBytes.subarray(0, HTTP2_PREFACE.length);
  if (!seen.equals(HTTP2_PREFACE.subarray(0, seen.length))) return 'http1';
  return seen.length === HTTP2_PREFACE.length ? 'grpc' : 'undecided';
}

export interface ProtocolListener {
  readonly address: HostPort;
  /** Stops accepting; connections already handed over stay with their servers. */
  stopAccepting(): void;
  /** Settles once the port is closed and every connection it accepted has ended. */
  readonly closed: Promise<void>;
  /** Drops connections still waiting for their first bytes. */
  destroyUndecided(): void;
}

/** TLS on the client port: every connection must be TLS; ALPN chooses gRPC (h2) or HTTP/1.1. */
export interface ListenerTls {
  options(): SecureContextOptions;
  /** Clients must present a certificate the configured CA signed. */
  readonly requireClientCert: boolean;
  /** New certificate files: new connections get them, open ones keep theirs. */
  on(event: 'changed', listener: () => void): unknown;
}

/** Hands each accepted connection to gRPC or the HTTP server, by ALPN or by its first bytes. */
interface ConnectionRouter {
  route(socket: Socket): void;
  destroyUndecided(): void;
}

function createRouter(grpc: GrpcConnections, http: HttpServer, log: Logger, tls: ListenerTls | null): ConnectionRouter {
  const undecided = new Set<Socket>();

  const handOver = (connection: Socket, protocol: 'grpc' | 'http1'): void => {
    if (protocol === 'grpc') grpc.injectConnection(connection);
    else {
      http.emit('connection', connection);
      // The HTTP parser only listens for data; the socket was paused to put its first bytes back.
      connection.resume();
    }
  };

  // TLS terminates in a tls.Server that never listens: it gets the accepted sockets, then hands the
  // decrypted connections on where ALPN says, as the plain path does.
  const tlsServer =
    tls === null
      ? null
      : createTlsServer({ ...tls.options(), ALPNProtocols: ['h2', 'http/1.1'], requestCert: tls.requireClientCert, rejectUnauthorized: tls.requireClientCert, handshakeTimeout: FIRST_BYTES_TIMEOUT_MS }, (secured) =>
          handOver(secured, secured.alpnProtocol === 'h2' ? 'grpc' : 'http1'),
        );
  tlsServer?.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
  if (tls !== null) tls.on('changed', () => tlsServer?.setSecureContext(tls.options()));

  const route = (socket: Socket): void => {
    // TLS takes the socket before any byte is read: its handshake reads from the socket's handle,
    // past anything read here. So plain text on a TLS port fails the handshake and is dropped.
    if (tlsServer !== null) {
      tlsServer.emit('connection', socket);
      return;
    }
    undecided.add(socket);
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const protocol = sniffProtocol(buffered);
      if (protocol === 'undecided') return;
      socket.off('data', onData);
      socket.off('error', onEarlyError);
      socket.pause();
      socket.setTimeout(0);
      undecided.delete(socket);
      socket.unshift(buffered);
      handOver(socket, protocol);
    };
    const onEarlyError = (): void => {
      undecided.delete(socket);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('error', onEarlyError);
    socket.once('close', () => undecided.delete(socket));
  };

  return {
    route,
    destroyUndecided() {
      for (const socket of undecided) socket.destroy();
      undecided.clear();
    },
  };
}

/** The client port of a serving process (--workers) that another process listens on and hands connections to. */
export interface HandedOverListener extends ProtocolListener {
  /** A connection the listening process accepted (not yet read from): served as if accepted here. */
  accept(socket: Socket): void;
}

/**
 * The same routing for connections accepted elsewhere: `address` is where the
 * listening process bound the port. After stopAccepting, connections still
 * handed over are closed at once (their clients connect again, to another process).
 */
export function serveHandedOver(address: HostPort, grpc: GrpcConnections, http: HttpServer, log: Logger, tls: ListenerTls | null = null): HandedOverListener {
  const { route, destroyUndecided } = createRouter(grpc, http, log, tls);
  const open = new Set<Socket>();
  let accepting = true;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  const settleIfDone = (): void => {
    if (!accepting && open.size === 0) markClosed();
  };
  return {
    address,
    closed,
    accept(socket) {
      if (!accepting) {
        socket.destroy();
        return;
      }
      open.add(socket);
      socket.once('close', () => {
        open.delete(socket);
        settleIfDone();
      });
      socket.setNoDelay(true);
      route(socket);
    },
    stopAccepting() {
      accepting = false;
      settleIfDone();
    },
    destroyUndecided,
  };
}

/**
 * One TCP port for gRPC and HTTP/1.1, as etcd serves both on its client port:
 * gRPC connections go to grpc-js through its connection injector, the rest
 * to the Node HTTP server of the gateway.
 */
export async function listenForBoth(
  address: HostPort,
  grpc: GrpcConnections,
  http: HttpServer,
  log: Logger,
  tls: ListenerTls | null = null,
): Promise<ProtocolListener> {
  const { route, destroyUndecided } = createRouter(grpc, http, log, tls);
  const server: NetServer = createServer({ noDelay: true }, route);
  const port = await listenOn(server, address);
  server.on('error', (error) => log.error({ err: error }, 'listener error'));
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  return {
    address: { host: address.host, port },
    closed,
    stopAccepting: () => {
      if (server.listening) server.close(() => markClosed());
    },
    destroyUndecided,
  };
}
