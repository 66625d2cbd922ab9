import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import type { UpstreamPool } from './pool';
import { reasonedCall } from './call-reason';

export interface HealthResult {
  readonly healthy: boolean;
  /** Why not, when not: the upstream's error or "no member answered". */
  readonly reason?: string;
}

const RANGE_PATH = '/etcdserverpb.KV/Range';

/**
 * Asks the upstream what etcd's own /health asks itself: a linearizable read,
 * which needs a leader and a quorum. Tries each member once.
 */
export async function probeUpstreamHealth(pool: UpstreamPool, timeoutMs: number): Promise<HealthResult> {
  const range = etcdMethod('etcdserverpb.KV', 'Range');
  const request = range.requestSerialize({ key: Buffer.from('health') });
  let reason = 'no upstream member configured';
  for (const member of pool.candidates()) {
    const error = await new Promise<ServiceError | null>((resolve) => {
      member.client.makeUnaryRequest(
        RANGE_PATH,
        passBytes,
        passBytes,
        request,
        new Metadata(),
        reasonedCall('health', Date.now() + timeoutMs),
        (err) => resolve(err),
      );
    });
    if (error === null) return { healthy: true };
    reason = `${member.endpoint.url}: ${error.details}`;
  }
  return { healthy: false, reason };
}
