import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import { readHeaderRevision } from '../etcd/response-bytes';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';

/** The contract's bound on a barrier: past it, a linearizable read is forwarded instead. */
export const READ_BARRIER_TIMEOUT_MS = 3_000;
// Any key will do: a count-only, linearizable Range costs etcd a ReadIndex and no data.
// Encoded once, and only the header's revision is read from the answer: a busy proxy makes
// thousands of these a second.
const RANGE = etcdMethod('etcdserverpb.KV', 'Range');
const BARRIER_REQUEST = RANGE.requestSerialize({ key: Buffer.from('etcd-cache-proxy/read-barrier'), count_only: true });

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
        return readHeaderRevision(await askRange(member));
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }
}

function askRange(member: UpstreamMember): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    member.client.makeUnaryRequest(
      RANGE.path,
      passBytes,
      passBytes,
      BARRIER_REQUEST,
      new Metadata(),
      { deadline: Date.now() + READ_BARRIER_TIMEOUT_MS },
      (error: ServiceError | null, response?: Buffer) => (error !== null ? reject(error) : resolve(response ?? Buffer.alloc(0))),
    );
  });
}
