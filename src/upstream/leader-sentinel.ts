import { EventEmitter } from 'node:events';
import { ETCD_ERRORS } from '../etcd/errors';
import { Metadata, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import type { UpstreamMember, UpstreamPool } from './pool';
import { reasonedCall } from './call-reason';

/** How soon a sentinel that no member would hold is tried again. */
const RETRY_MS = 1_000;
const WATCH = etcdMethod('etcdserverpb.Watch', 'Watch');
// Answered on any Watch stream (watch ID -1), watches or not: the member took the stream.
const PROGRESS_REQUEST = WATCH.requestSerialize({ progress_request: {} });

function requireLeader(): Metadata {
  const metadata = new Metadata();
  metadata.set('hasleader', 'true');
  return metadata;
}

/**
 * Learns that no member has a leader when etcd tells its own clients: holds
 * one Watch stream with etcd's require-leader metadata (no watch on it) while
 * someone needs to know. etcd ends such a stream with "etcdserver: no leader"
 * after a few election timeouts without a leader, and refuses a new one while
 * it has none; once no member will hold one, `noLeader` is emitted, and
 * downstream require-leader streams end as etcd ends its own. A member merely
 * cut off from its leader while others have one moves the stream elsewhere.
 * Nothing is held while nobody asks.
 */
export class LeaderSentinel extends EventEmitter<{ noLeader: [] }> {
  private users = 0;
  private stream: ClientDuplexStream<Buffer, Buffer> | null = null;
  /** False once no member would hold the stream for want of a leader; true once one did. */
  private leader: boolean | null = null;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly pool: UpstreamPool) {
    super();
    this.setMaxListeners(0); // one listener per downstream require-leader stream
  }

  /** True while no member holds the sentinel for want of a leader. */
  noLeader(): boolean {
    return this.leader === false;
  }

  /** Keeps the sentinel up until the returned function is called. */
  acquire(): () => void {
    this.users += 1;
    if (this.users === 1) this.tryMembers(this.pool.candidates(), false);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.users -= 1;
      if (this.users === 0) this.stop();
    };
  }

  private stop(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const stream = this.stream;
    this.stream = null;
    this.leader = null; // unknown while nobody watches
    stream?.cancel();
  }

  /** Opens the sentinel on the first of `members` that takes it; `sawNoLeader`: a member refused it for want of a leader. */
  private tryMembers(members: readonly UpstreamMember[], sawNoLeader: boolean): void {
    if (this.users === 0) return;
    const [member, ...rest] = members;
    if (member === undefined) {
      if (sawNoLeader && this.leader !== false) {
        this.leader = false;
        this.emit('noLeader');
      }
      this.retryTimer = setTimeout(() => this.tryMembers(this.pool.candidates(), false), RETRY_MS);
      this.retryTimer.unref();
      return;
    }
    let stream: ClientDuplexStream<Buffer, Buffer>;
    try {
      stream = member.client.makeBidiStreamRequest(WATCH.path, passBytes, passBytes, requireLeader(), reasonedCall('leader-sentinel'));
    } catch {
      this.tryMembers(rest, sawNoLeader); // a closed channel: only while the proxy stops
      return;
    }
    this.stream = stream;
    let taken = false;
    stream.on('data', () => {
      if (taken || this.stream !== stream) return;
      taken = true;
      this.leader = true;
    });
    stream.on('error', () => undefined); // reported through 'status'
    stream.on('status', (final: StatusObject) => {
      if (this.stream !== stream) return; // stopped on purpose
      this.stream = null;
      const noLeader = final.details === ETCD_ERRORS.noLeader.details;
      // Taken, then ended by etcd: every member is asked afresh; refused at once: the next one.
      if (taken) this.tryMembers(this.pool.candidates(), noLeader);
      else this.tryMembers(rest, sawNoLeader || noLeader);
    });
    stream.write(PROGRESS_REQUEST);
  }
}
