import { constants as h2, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';

// A client that opens thousands of streams at once (a fleet of watchers
// starting together: hundreds of Watch streams per connection) hands the
// server all of them in one read of its socket, and Node's HTTP/2 server
// announces each one synchronously. Started there, each costs grpc-js's call
// setup, the handler and its first answer (about a quarter of a millisecond
// for a Watch stream here): 10 000 of them kept the event loop busy for
// seconds at a stretch, and every other connection (a plain read, a new
// client's handshake) waited behind them, long enough for clients to time out.
//
// So a connection's streams beyond a few per turn of the event loop wait in
// order, and are started in short slices, one connection after another, with
// the event loop free between slices: the flood is served about as fast as
// before, and anyone else is served between two slices. etcd's own server
// works through each stream's requests in order the same way, and Go
// schedules its connections' goroutines fairly.

/** Streams one connection may start in the turn they arrive in; the rest of its burst waits for later turns. */
export const STREAMS_PER_CONNECTION_PER_TURN = 16;
/** Streams all connections together may start in one turn before any more waits. */
export const STREAMS_PER_TURN = 64;
/** A slice starts at most this many waiting streams, one per connection in turn... */
const STREAMS_PER_SLICE = 8;
/** ...or stops once it has taken this long (what another connection may wait for one slice). */
const SLICE_MS = 2;
/**
 * Streams one connection may have waiting. Each already holds Node's stream
 * object (the client opened it); past this many, new ones are refused with
 * REFUSED_STREAM, which tells the client that nothing was done and it may retry.
 */
export const MAX_WAITING_STREAMS_PER_CONNECTION = 50_000;

export type StreamStart = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

interface Waiting {
  readonly stream: ServerHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  readonly flags: number;
  readonly rawHeaders: string[];
}

/** A connection's waiting streams, oldest first: taken from the front by index (shifting a long array copies it). */
class StreamQueue {
  private items: Waiting[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: Waiting): void {
    this.items.push(item);
  }

  take(): Waiting | undefined {
    const item = this.items[this.head];
    this.head += 1;
    // Drop what was taken once it is most of the array, so the array never holds more than twice what waits.
    if (this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** Starts the streams of every connection, pacing bursts: one per HTTP/2 server set (see http2-routing.ts). */
export class StreamPacer {
  /** Per connection with streams waiting, in arrival order; the map's order is whose turn is next. */
  private readonly waiting = new Map<Http2Session, StreamQueue>();
  /** Connections whose close already drops their waiting streams (one listener each, however many bursts). */
  private readonly hooked = new WeakSet<Http2Session>();
  /** Streams started this turn, per connection and in all. */
  private readonly startedThisTurn = new Map<Http2Session, number>();
  private startedInAll = 0;
  private turnEndScheduled = false;
  private sliceScheduled = false;

  constructor(private readonly start: StreamStart) {}

  /** A new stream: started now if its connection and this turn have room and nothing of its connection waits, else queued behind. */
  offer(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    const session = stream.session;
    const queue = session === undefined ? undefined : this.waiting.get(session);
    if (session === undefined || (queue === undefined && this.roomNow(session))) {
      if (session !== undefined) this.count(session);
      this.start(stream, headers, flags, rawHeaders);
      return;
    }
    if (queue !== undefined && queue.length >= MAX_WAITING_STREAMS_PER_CONNECTION) {
      stream.close(h2.NGHTTP2_REFUSED_STREAM);
      return;
    }
    // Nobody listens on the stream until it starts: a reset from the client must not throw meanwhile.
    stream.once('error', () => undefined);
    if (queue === undefined) {
      const fresh = new StreamQueue();
      fresh.push({ stream, headers, flags, rawHeaders });
      this.waiting.set(session, fresh);
      if (!this.hooked.has(session)) {
        this.hooked.add(session);
        session.once('close', () => this.waiting.delete(session));
      }
    } else queue.push({ stream, headers, flags, rawHeaders });
    this.scheduleSlice();
  }

  /** Streams waiting to start, over every connection (for tests and metrics). */
  waitingCount(): number {
    let count = 0;
    for (const queue of this.waiting.values()) count += queue.length;
    return count;
  }

  private roomNow(session: Http2Session): boolean {
    return this.startedInAll < STREAMS_PER_TURN && (this.startedThisTurn.get(session) ?? 0) < STREAMS_PER_CONNECTION_PER_TURN;
  }

  private count(session: Http2Session): void {
    this.startedThisTurn.set(session, (this.startedThisTurn.get(session) ?? 0) + 1);
    this.startedInAll += 1;
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    // The turn ends once the event loop has read its sockets: the next read starts afresh.
    setImmediate(() => {
      this.turnEndScheduled = false;
      this.startedThisTurn.clear();
      this.startedInAll = 0;
    });
  }

  private scheduleSlice(): void {
    if (this.sliceScheduled) return;
    this.sliceScheduled = true;
    setImmediate(() => {
      this.sliceScheduled = false;
      this.slice();
    });
  }

  /** Starts waiting streams, one connection after another, until the slice is full; the rest wait for the next one. */
  private slice(): void {
    const deadline = performance.now() + SLICE_MS;
    let started = 0;
    while (this.waiting.size > 0 && started < STREAMS_PER_SLICE && performance.now() < deadline) {
      const [session, queue] = this.waiting.entries().next().value as [Http2Session, StreamQueue];
      // Its turn is over: behind every other connection that waits.
      this.waiting.delete(session);
      const next = queue.take();
      if (queue.length > 0) this.waiting.set(session, queue);
      // A stream the client reset (or whose connection ended) while it waited is not started at all.
      if (next === undefined || next.stream.destroyed || next.stream.closed) continue;
      started += 1;
      this.start(next.stream, next.headers, next.flags, next.rawHeaders);
    }
    if (this.waiting.size > 0) this.scheduleSlice();
  }
}
