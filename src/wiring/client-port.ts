import type { Server as HttpServer } from 'node:http';
import type { Server as GrpcServer } from '@grpc/grpc-js';
import { advertisedUrlFor } from '../config';
import type { HostPort } from '../etcd/endpoint';
import { createMetricsServer, type Scrape } from '../gateway/http-gateway';
import type { GrpcConnections } from '../grpc/server';
import { trackHttpConnections, type HttpConnections } from '../listener/http-connections';
import { listenOn } from '../listener/listen';
import { listenForBoth, serveHandedOver, type ListenerTls, type ProtocolListener } from '../listener/protocol-listener';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { ProxyConfig } from '../settings/types';
import { watchServerContext } from '../tls/server-tls';
import type { WatchedMaterial } from '../tls/watched-material';
import type { SecureContextOptions } from 'node:tls';
import type { HandedPort } from './sides';

export interface ClientPort {
  readonly listener: ProtocolListener;
  /** The client port's certificate files, watched (null without --cert-file). */
  readonly serverTls: WatchedMaterial<SecureContextOptions> | null;
  /** The URL clients are told to dial (MemberList, the loop guard). */
  readonly advertiseClientUrl: string;
}

/**
 * The client port, gRPC and HTTP on one listener: bound here, or, with
 * `handedPort`, served from connections another process accepts.
 */
export async function openClientPort(config: ProxyConfig, grpc: GrpcConnections, http: HttpServer, log: Logger, handedPort?: HandedPort): Promise<ClientPort> {
  const serverTls = config.serverTls === null ? null : watchServerContext(config.serverTls, log.child({ component: 'tls' }));
  const listenerTls: ListenerTls | null =
    serverTls === null
      ? null
      : { options: () => serverTls.current(), requireClientCert: config.serverTls?.trustedCaFile != null, on: (event, listener) => serverTls.on(event, listener) };
  let listener: ProtocolListener;
  if (handedPort === undefined) listener = await listenForBoth(config.listenAddr, grpc, http, log, listenerTls);
  else {
    const handed = serveHandedOver(handedPort.address, grpc, http, log, listenerTls);
    handedPort.serve((socket) => handed.accept(socket));
    listener = handed;
  }
  return { listener, serverTls, advertiseClientUrl: advertisedUrlFor(config.advertiseClientUrl, listener.address, serverTls !== null) };
}

export interface MetricsPort {
  readonly address: HostPort;
  close(graceMs: number): Promise<void>;
}

/** The --metrics-addr listener, when configured. */
export async function openMetricsPort(config: ProxyConfig, metrics: Metrics, log: Logger, scrape?: Scrape): Promise<MetricsPort | null> {
  if (config.metricsAddr === null) return null;
  const server = createMetricsServer(metrics, log, scrape);
  const connections = trackHttpConnections(server);
  const address = { host: config.metricsAddr.host, port: await listenOn(server, config.metricsAddr) };
  return { address, close: (graceMs) => closeHttp(server, connections, graceMs) };
}

/** Calls in flight finish within the grace period; what is left then is cut. */
export function shutdownGrpc(server: GrpcServer, graceMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn({ graceMs }, 'grace period over, cutting remaining calls');
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The server stops taking connections; the ones it has end as their responses finish, or at the end of the grace period. */
export async function closeHttp(server: HttpServer, connections: HttpConnections, graceMs: number): Promise<void> {
  // The client port's server never listened itself (the protocol listener owns the port): nothing to close there.
  if (server.listening) server.close();
  await connections.drain(graceMs);
}
