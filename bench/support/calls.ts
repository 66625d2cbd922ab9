import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { passBytes } from '../../src/etcd/proto';
import { sleep } from '../../test/support/until';

/** One unary gRPC call made with raw bytes, answered with the bytes the server sent (any size). */
export function rawUnary(address: string, path: string, request: Buffer, deadlineMs = 30_000): Promise<Buffer> {
  const client = new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  return new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest(path, passBytes, passBytes, request, { deadline: Date.now() + deadlineMs }, (error: ServiceError | null, answer?: Buffer) => {
      client.close();
      if (error !== null) reject(error);
      else resolve(answer ?? Buffer.alloc(0));
    }),
  );
}

/** Waits until the proxy's /readyz says its mirror is synced at `revision` or later: only then does it answer from the mirror. */
export async function untilMirrored(proxyUrl: string, revision: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const answer = (await (await fetch(`${proxyUrl}/readyz`, { signal: AbortSignal.timeout(1000) })).json()) as { state?: string; revision?: number };
      if (answer.state === 'synced' && (answer.revision ?? 0) >= revision) return;
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) throw new Error(`the proxy's mirror did not reach revision ${revision} within ${timeoutMs} ms`);
    await sleep(50);
  }
}
