import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpConnections {
  /**
   * Ends idle keep-alive connections now, each busy one once its response is
   * done, and cuts whatever is left when the grace period is over.
   */
  drain(graceMs: number): Promise<void>;
}

/**
 * Node's own idle-connection tracking starts only when a server listens, and
 * the client port's HTTP server never does: the protocol listener hands it
 * sockets. Without this an idle keep-alive client held the proxy's stop
 * until the client gave up on the connection.
 */
export function trackHttpConnections(server: HttpServer): HttpConnections {
  const busy = new Map<Socket, number>();
  let draining = false;
  let settle: (() => void) | null = null;

  const forget = (socket: Socket): void => {
    busy.delete(socket);
    if (draining && busy.size === 0) settle?.();
  };
  server.on('connection', (socket: Socket) => {
    if (draining) {
      socket.destroy();
      return;
    }
    busy.set(socket, 0);
    socket.once('close', () => forget(socket));
  });
  // First in line, so a response started during the drain already says Connection: close.
  server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    if (draining) response.shouldKeepAlive = false;
    response.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1;
      if (!busy.has(socket)) return;
      busy.set(socket, left);
      if (draining && left === 0) socket.end();
    });
  });

  return {
    drain(graceMs) {
      draining = true;
      for (const [socket, requests] of busy) if (requests === 0) socket.destroy();
      if (busy.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const socket of busy.keys()) socket.destroy();
          resolve();
        }, graceMs);
        settle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
