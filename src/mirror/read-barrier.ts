import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { toRevision, type WireRangeResponse } from '../etcd/wire';

/** The contract's bound on a barrier: past it, a linearizable read is forwarded instead. */
export const READ_BARRIER_TIMEOUT_MS = 3_000;
// Any key will do: a count-only, linearizable Range costs etcd a ReadIndex and no data.
const BARRIER_REQUEST = { key: Buffer.from('etcd-cache-proxy/read-barrier'), count_only: true };

/**
 * Learns the upstream's current revision with a linearizable call shared by
 * every read waiting at that moment. A read that arrives while a call is in
 * flight waits for the next one, since the one in flight may have been
 * answered before the read arrived; so N concurrent reads cost at most two
 * upstream calls, not N.
 */
export class ReadBarrier {
  private inflight: Promise<number> | null = null;
  private queued: Promise<number> | null = null;
  constructor(
    private readonly pool: UpstreamPool,
    /** Told of every upstream call, for the calls-per-read metric. */
    private readonly onCall: () => void = () => undefined,
  ) {}

  upstreamRevision(): Promise<number> {
    if (this.inflight === null) return this.start();
    this.queued ??= this.inflight.then(
      () => this.startQueued(),
      () => this.startQueued(),
    );
    return this.queued;
  }

  private startQueued(): Promise<number> {
    this.queued = null;
    return this.start();
  }

  private start(): Promise<number> {
    const call = this.fetch();
    this.inflight = call;
    const clear = (): void => {
      if (this.inflight === call) this.inflight = null;
    };
    call.then(clear, clear);
    return call;
  }

  private async fetch(): Promise<number> {
    this.onCall();
    let lastError: unknown = new Error('no upstream member');
    for (const member of this.pool.candidates()) {
      try {
        const response = await callUpstream<WireRangeResponse>(member.client, 'etcdserverpb.KV', 'Range', BARRIER_REQUEST, {
          deadlineMs: READ_BARRIER_TIMEOUT_MS,
        });
        return toRevision(response.header?.revision);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }
}
