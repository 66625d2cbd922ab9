import type { Server } from 'node:net';
import type { HostPort } from '../etcd/endpoint';

/**
 * Binds `server` (net, HTTP, or the primary's client port) and resolves with
 * the port it got: the one asked for, or the kernel's choice for port 0. A
 * bind error (EADDRINUSE) rejects instead of reaching the server's error listeners.
 */
export async function listenOn(server: Server, address: HostPort): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  return typeof bound === 'object' && bound !== null ? bound.port : address.port;
}
