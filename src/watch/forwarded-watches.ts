import { Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { serviceMethods } from '../api/proto';
import type { WireWatchResponse } from '../mirror/codec';
import type { UpstreamPool } from '../upstream/pool';
import type { WireWatchCreateRequest } from './watch-spec';

/**
 * The watches of one downstream stream that the mirror cannot serve (keys
 * outside the mirrored prefixes, or no usable mirror yet): relayed on one
 * upstream stream opened on first use, with watch IDs translated both ways,
 * since the downstream stream's IDs are the proxy's to hand out.
 */
export class ForwardedWatches {
  private upstream: ClientDuplexStream<object, WireWatchResponse> | null = null;
  /** Downstream IDs of creates sent upstream and not yet answered, in order (etcd answers creates in order). */
  private readonly pending: number[] = [];
  private readonly downstreamOf = new Map<string, number>();
  private readonly upstreamOf = new Map<number, string>();

  constructor(
    private readonly pool: UpstreamPool,
    private readonly metadata: Metadata,
    /** A response for one downstream watch, its watch_id already translated. */
    private readonly deliver: (response: WireWatchResponse) => void,
    /** The upstream stream failed: these downstream watches are gone. */
    private readonly broken: (ids: number[], reason: string) => void,
    private readonly onUpstreamCount: (delta: number) => void,
  ) {}

  has(id: number): boolean {
    return this.upstreamOf.has(id) || this.pending.includes(id);
  }

  create(id: number, request: WireWatchCreateRequest): void {
    const upstream = this.open();
    if (upstream === null) {
      this.broken([id], 'etcd-cache-proxy: no upstream member for a watch the mirror cannot serve');
      return;
    }
    this.pending.push(id);
    // Upstream IDs are chosen upstream; the client's choice is kept on this side.
    upstream.write({ create_request: { ...request, watch_id: '0' } });
  }

  /** Stops relaying one watch; the caller answers the cancel itself. */
  cancel(id: number): void {
    const upstreamId = this.upstreamOf.get(id);
    if (upstreamId !== undefined) {
      this.upstreamOf.delete(id);
      this.downstreamOf.delete(upstreamId);
      this.upstream?.write({ cancel_request: { watch_id: upstreamId } });
    }
    const waiting = this.pending.indexOf(id);
    // Answered later, then dropped: the slot keeps the order of create answers.
    if (waiting >= 0) this.pending[waiting] = -1;
  }

  close(): void {
    this.upstream?.cancel();
  }

  private open(): ClientDuplexStream<object, WireWatchResponse> | null {
    if (this.upstream !== null) return this.upstream;
    const member = this.pool.candidates()[0];
    if (member === undefined) return null;
    const watch = serviceMethods('etcdserverpb.Watch').Watch;
    if (watch === undefined) throw new Error('etcd-cache-proxy: Watch.Watch missing from proto/');
    const stream = member.client.makeBidiStreamRequest(watch.path, watch.requestSerialize, watch.responseDeserialize, this.metadata, {}) as ClientDuplexStream<object, WireWatchResponse>;
    this.upstream = stream;
    this.onUpstreamCount(1);
    let ended = false;
    const fail = (reason: string): void => {
      if (ended) return;
      ended = true;
      this.onUpstreamCount(-1);
      this.upstream = null;
      const ids = [...this.upstreamOf.keys(), ...this.pending.filter((id) => id >= 0)];
      this.upstreamOf.clear();
      this.downstreamOf.clear();
      this.pending.length = 0;
      if (ids.length > 0) this.broken(ids, reason);
    };
    stream.on('data', (response: WireWatchResponse) => this.received(response));
    stream.on('error', (error: Error & { details?: string }) => fail(`etcd-cache-proxy: upstream watch stream failed: ${error.details ?? error.message}`));
    stream.on('end', () => fail('etcd-cache-proxy: upstream ended the watch stream'));
    return stream;
  }

  private received(response: WireWatchResponse): void {
    const upstreamId = response.watch_id ?? '0';
    if (response.created === true) {
      const id = this.pending.shift();
      if (id === undefined || id < 0) {
        // Cancelled before it was created: cancel it upstream too.
        if (response.canceled !== true) this.upstream?.write({ cancel_request: { watch_id: upstreamId } });
        return;
      }
      if (response.canceled !== true) {
        this.upstreamOf.set(id, upstreamId);
        this.downstreamOf.set(upstreamId, id);
      }
      this.deliver({ ...response, watch_id: String(id) });
      return;
    }
    const id = this.downstreamOf.get(upstreamId);
    if (id === undefined) return; // a watch the client cancelled, or a progress reply nobody here asked for
    if (response.canceled === true) {
      this.downstreamOf.delete(upstreamId);
      this.upstreamOf.delete(id);
    }
    this.deliver({ ...response, watch_id: String(id) });
  }
}
