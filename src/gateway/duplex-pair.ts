import { Duplex } from 'node:stream';

/**
 * Two in-memory streams wired back to back: what one writes, the other reads.
 * Node 20 has no stream.duplexPair (22.6 added it).
 *
 * A write completes at once, whether or not the other side has read what
 * came before, as a write into a kernel socket buffer does. Holding writes
 * back instead deadlocks HTTP/2 over this pair: under a burst of streams,
 * both sessions fill their peer's buffer, stop reading while their own
 * write waits, and neither ever reads again (seen with ~1000 watches opened
 * at once). What bounds memory here is HTTP/2's own flow control, per stream
 * and per connection, which both sessions apply regardless of the transport.
 */
export function duplexPair(): [Duplex, Duplex] {
  const a = new Endpoint();
  const b = new Endpoint();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class Endpoint extends Duplex {
  /** The other end; set right after construction, before any I/O. */
  peer: Endpoint | null = null;

  override _read(): void {
    // Data arrives by the peer's writes; nothing to fetch.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === null || peer.destroyed) {
      callback(new Error('duplex pair: the other end is closed'));
      return;
    }
    peer.push(chunk);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    // A socket that goes away ends both directions, as a closed TCP connection would.
    if (peer !== null && !peer.destroyed) {
      peer.push(null);
      peer.destroy();
    }
    callback(error);
  }
}
