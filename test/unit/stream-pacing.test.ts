// The pacer of gRPC stream starts (src/grpc/stream-pacing.ts), with stand-in
// streams and connections: a burst beyond a turn's room waits and starts in
// order over later turns, one connection after another; a stream reset while
// it waited never starts; a connection with too many waiting is refused more.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import { describe, it } from 'node:test';
import { MAX_WAITING_STREAMS_PER_CONNECTION, STREAMS_PER_CONNECTION_PER_TURN, STREAMS_PER_TURN, StreamPacer } from '../../src/grpc/stream-pacing';

class FakeStream extends EventEmitter {
  destroyed = false;
  closed = false;
  closedWith: number | null = null;
  constructor(
    readonly session: Http2Session,
    readonly name: string,
  ) {
    super();
  }
  close(code: number): void {
    this.closed = true;
    this.closedWith = code;
  }
}

const session = (): Http2Session => new EventEmitter() as unknown as Http2Session;
const stream = (s: Http2Session, name: string): FakeStream => new FakeStream(s, name);
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function pacer(): { pacer: StreamPacer; started: string[]; offer: (s: FakeStream) => void } {
  const started: string[] = [];
  const paced = new StreamPacer((s) => started.push((s as unknown as FakeStream).name));
  return { pacer: paced, started, offer: (s) => paced.offer(s as unknown as ServerHttp2Stream, {}, 0, []) };
}

async function untilIdle(p: StreamPacer): Promise<void> {
  for (let turns = 0; p.waitingCount() > 0; turns += 1) {
    assert.ok(turns < 10_000, 'the pacer never finished');
    await nextTurn();
  }
}

describe('stream pacing', () => {
  it('starts a small burst at once', () => {
    const { started, offer } = pacer();
    const a = session();
    for (let i = 0; i < STREAMS_PER_CONNECTION_PER_TURN; i += 1) offer(stream(a, `a${i}`));
    assert.equal(started.length, STREAMS_PER_CONNECTION_PER_TURN);
  });

  it("starts the rest of a connection's burst in later turns, in order", async () => {
    const { pacer: p, started, offer } = pacer();
    const a = session();
    const names = Array.from({ length: 200 }, (_, i) => `a${i}`);
    for (const name of names) offer(stream(a, name));
    assert.equal(started.length, STREAMS_PER_CONNECTION_PER_TURN, 'only a turn\'s room at once');
    await untilIdle(p);
    assert.deepEqual(started, names);
  });

  it('takes connections in turn, and a new stream of a waiting connection queues behind its own', async () => {
    const { pacer: p, started, offer } = pacer();
    const [a, b, c] = [session(), session(), session()];
    for (let i = 0; i < 100; i += 1) offer(stream(a, `a${i}`));
    for (let i = 0; i < 100; i += 1) offer(stream(b, `b${i}`));
    // A connection that opens one stream in this turn still has room: it is not held behind a and b.
    offer(stream(c, 'c0'));
    assert.ok(started.includes('c0'));
    await nextTurn(); // the turn ends
    offer(stream(a, 'a-late'));
    await untilIdle(p);
    assert.deepEqual(started.filter((n) => n.startsWith('a')), [...Array.from({ length: 100 }, (_, i) => `a${i}`), 'a-late']);
    // Interleaved: b's streams do not all wait for a's.
    const firstB = started.indexOf('b' + String(STREAMS_PER_CONNECTION_PER_TURN));
    assert.ok(firstB < started.indexOf('a99'), `b went on while a waited: ${started.slice(0, 60).join(' ')}`);
  });

  it('starts no more than a turn holds over every connection at once', () => {
    const { started, offer } = pacer();
    for (let c = 0; c < 20; c += 1) {
      const s = session();
      for (let i = 0; i < STREAMS_PER_CONNECTION_PER_TURN; i += 1) offer(stream(s, `${c}-${i}`));
    }
    assert.equal(started.length, STREAMS_PER_TURN);
  });

  it('never starts a stream reset while it waited', async () => {
    const { pacer: p, started, offer } = pacer();
    const a = session();
    const streams = Array.from({ length: 50 }, (_, i) => stream(a, `a${i}`));
    streams.forEach(offer);
    const reset = streams[40];
    assert.ok(reset !== undefined);
    reset.destroyed = true;
    reset.emit('error', new Error('reset by the client')); // must not throw: the pacer listens while it waits
    await untilIdle(p);
    assert.equal(started.length, 49);
    assert.ok(!started.includes('a40'));
  });

  it("drops a closed connection's waiting streams", async () => {
    const { pacer: p, started, offer } = pacer();
    const a = session();
    for (let i = 0; i < 50; i += 1) offer(stream(a, `a${i}`));
    (a as unknown as EventEmitter).emit('close');
    assert.equal(p.waitingCount(), 0);
    await nextTurn();
    assert.equal(started.length, STREAMS_PER_CONNECTION_PER_TURN);
  });

  it('refuses streams past the waiting bound of a connection, with REFUSED_STREAM', () => {
    const { pacer: p, offer } = pacer();
    const a = session();
    for (let i = 0; i < STREAMS_PER_CONNECTION_PER_TURN + MAX_WAITING_STREAMS_PER_CONNECTION; i += 1) offer(stream(a, `a${i}`));
    assert.equal(p.waitingCount(), MAX_WAITING_STREAMS_PER_CONNECTION);
    const extra = stream(a, 'extra');
    offer(extra);
    assert.equal(extra.closedWith, 7); // NGHTTP2_REFUSED_STREAM
    assert.equal(p.waitingCount(), MAX_WAITING_STREAMS_PER_CONNECTION);
  });
});
