import { Duplex } from 'node:stream';

/**
 * Two in-memory streams wired back to back: what one writes, the other reads.
 * Node 20 has no stream.duplexPair (22.6 added it). Backpressure holds: a
 * write completes only once the other side has room for it, so neither side
 * buffers more than its highWaterMark for a peer that does not read.
 */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Endpoint[] = [new Endpoint(), new Endpoint()];
  const [a, b] = ends as [Endpoint, Endpoint];
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class Endpoint extends Duplex {
  /** The other end; set right after construction, before any I/O. */
  peer: Endpoint | null = null;
  /** The callback of a write the peer had no room for; called when the peer reads again. */
  private blockedWrite: (() => void) | null = null;

  override _read(): void {
    const resume = this.peer?.blockedWrite ?? null;
    if (this.peer !== null) this.peer.blockedWrite = null;
    resume?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === null || peer.destroyed) {
      callback(new Error('duplex pair: the other end is closed'));
      return;
    }
    if (peer.push(chunk)) callback();
    else this.blockedWrite = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    const blocked = this.blockedWrite;
    this.blockedWrite = null;
    blocked?.();
    // A socket that goes away ends both directions, as a closed TCP connection would.
    if (peer !== null && !peer.destroyed) {
      peer.push(null);
      peer.destroy();
    }
    callback(error);
  }
}
