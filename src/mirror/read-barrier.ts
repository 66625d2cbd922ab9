import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import { readHeaderRevision } from '../etcd/response-bytes';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';
import { reasonedCall } from '../upstream/call-reason';

/** The contract's bound on a barrier: past it, a linearizable read is forwarded instead. */
export const READ_BARRIER_TIMEOUT_MS = 3_000;
const RANGE = etcdMethod('etcdserverpb.KV', 'Range');

/** Calls in flight at once; reads beyond that wait for the next one to start. */
const MAX_CALLS_IN_FLIGHT = 4;

/**
 * Learns the upstream's current revision with a linearizable call shared by
 * the reads that ask for it in one turn of the event loop. A read may only
 * share a call sent after it arrived (one sent earlier may have been answered
 * before a write the reader saw completed); every read handled in a turn was
 * received before that turn began, so a call started in the same turn is
 * sent late enough. A read in a later turn starts a call of its own, without
 * waiting for the ones in flight, so its wait is one round trip, not one and
 * a half; past MAX_CALLS_IN_FLIGHT, reads wait for the next call to start.
 */
export class ReadBarrier {
  /** The call started in the current turn, which reads handled in this turn share. */
  private joinable: Promise<number> | null = null;
  private inFlight = 0;
  /** Reads waiting for a call to finish before theirs can start. */
  private queued: { promise: Promise<number>; start: () => void } | null = null;
  /**
   * A count-only, linearizable Range of one mirrored key (which the mirror's user may read when auth is
   * on): it costs etcd a ReadIndex and no data. Encoded once, and only the header's revision is read from
   * the answer: a busy proxy makes thousands of these a second.
   */
  private request: { key: Buffer; bytes: Buffer } | null = null;

  constructor(
    private readonly pool: UpstreamPool,
    /** A key the mirror holds now (its ranges may change with what the mirror's user may read). */
    private readonly probeKey: () => Buffer,
    /** Who the barrier's reads are made as when etcd has auth on. */
    private readonly identity: UpstreamLogin,
    /** Told of every upstream call, for the calls-per-read metric. */
    private readonly onCall: () => void = () => undefined,
    /** The response headers of every answer (a regional's carry its stale mark: upstream/tier-stale.ts). */
    private readonly onHeaders: (headers: Metadata) => void = () => undefined,
  ) {
  }

  private requestBytes(): Buffer {
    const key = this.probeKey();
    if (this.request === null || !this.request.key.equals(key)) this.request = { key, bytes: RANGE.requestSerialize({ key, count_only: true }) };
    return this.request.bytes;
  }

  upstreamRevision(): Promise<number> {
    if (this.joinable !== null) return this.joinable;
    if (this.inFlight < MAX_CALLS_IN_FLIGHT) {
      const call = this.start();
      this.joinable = call;
      setImmediate(() => {
        if (this.joinable === call) this.joinable = null;
      });
      return call;
    }
    if (this.queued === null) {
      let start: () => void = () => undefined;
      const promise = new Promise<number>((resolve, reject) => {
        start = () => this.start().then(resolve, reject);
      });
      this.queued = { promise, start };
    }
    return this.queued.promise;
  }

  private start(): Promise<number> {
    this.inFlight += 1;
    const call = this.fetch();
    const done = (): void => {
      this.inFlight -= 1;
      const queued = this.queued;
      if (queued !== null) {
        this.queued = null;
        queued.start();
      }
    };
    call.then(done, done);
    return call;
  }

  private async fetch(): Promise<number> {
    this.onCall();
    let lastError: unknown = new Error('no upstream member');
    for (const member of this.pool.candidates()) {
      // A token etcd no longer takes (it restarted) is replaced, and the read asked once more.
      for (let attempt = 0; attempt < 2; attempt += 1) {
        try {
          await this.identity.readyAt(member);
          return readHeaderRevision(await askRange(member, this.requestBytes(), this.identity.metadataFor(member), this.onHeaders));
        } catch (error) {
          lastError = error;
          if (!this.identity.observe(member, error)) break;
        }
      }
    }
    throw lastError;
  }
}

function askRange(member: UpstreamMember, request: Buffer, metadata: Metadata, onHeaders: (headers: Metadata) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let headers: Metadata | null = null;
    const call = member.client.makeUnaryRequest(
      RANGE.path,
      passBytes,
      passBytes,
      request,
      metadata,
      reasonedCall('read-barrier', Date.now() + READ_BARRIER_TIMEOUT_MS),
      (error: ServiceError | null, response?: Buffer) => {
        if (error !== null) {
          reject(error);
          return;
        }
        // Noted before the read resolves: the reads waiting on this barrier see the mark when they answer.
        onHeaders(headers ?? new Metadata());
        resolve(response ?? Buffer.alloc(0));
      },
    );
    call.on('metadata', (received: Metadata) => {
      headers = received;
    });
  });
}
