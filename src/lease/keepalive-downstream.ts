import { status, type Metadata, type StatusObject } from '@grpc/grpc-js';

/** A downstream LeaseKeepAlive stream, whichever transport carries it (the core's DuplexCall has this shape). */
export interface KeepAliveCall {
  /** Request metadata: `hasleader` asks for a require-leader stream. */
  readonly metadata: Metadata;
  /** False when the client is not keeping up; 'drain' follows once it has. */
  write(message: Buffer): boolean;
  /** Ends the call with OK. */
  end(): void;
  /** Ends the call with this status. */
  emit(event: 'error', status: Partial<StatusObject>): boolean;
  on(event: 'cancelled' | 'drain' | 'end', listener: () => void): this;
  on(event: 'data', listener: (message: Buffer) => void): this;
  on(event: 'error', listener: (error: unknown) => void): this;
  once(event: 'drain', listener: () => void): this;
  /** Stops 'data' until resume(). */
  pause(): this;
  resume(): this;
}

/** One request of one downstream stream, until its answer has been written. */
export interface Slot {
  /** The lease it renews. */
  readonly id: string;
  readonly downstream: KeepAliveDownstream;
  /** etcd's answer, once the renewal it waits for was answered. */
  answer: Buffer | null;
}

/**
 * One downstream LeaseKeepAlive stream and the answers it is owed, in the
 * order it asked: etcd answers a stream in order, so an answer that came
 * early waits for those asked before it.
 */
export class KeepAliveDownstream {
  /** Requests not written an answer yet, oldest first. */
  readonly owed: Slot[] = [];
  /** The client ended its side: the stream ends once everything asked before is answered. */
  halfClosed = false;
  /** Ended (answered, refused, cancelled or stopped): nothing more is read or written. */
  finished = false;
  /** Unregisters the stream from the graceful stop, once it ended on its own. */
  untrack: () => void = () => undefined;
  /** A require-leader stream stops following the leader sentinel. */
  unfollowLeader: () => void = () => undefined;
  /** Reading is paused until the client takes what was written. */
  private waitingForDrain = false;

  constructor(readonly call: KeepAliveCall) {}

  /** Queues one request's answer, to be written once it and every earlier one came. */
  owe(id: string): Slot {
    const slot: Slot = { id, downstream: this, answer: null };
    this.owed.push(slot);
    return slot;
  }

  /**
   * Writes the answers at the head of the queue; one still pending holds back
   * those behind it. True when the stream is done: half-closed with nothing
   * owed, which etcd ends with OK.
   */
  flush(): boolean {
    if (this.finished) return false;
    for (let head = this.owed[0]; head !== undefined && head.answer !== null; head = this.owed[0]) {
      this.owed.shift();
      this.write(head.answer);
    }
    return this.halfClosed && this.owed.length === 0;
  }

  /** Ends the call with its final status: OK ends it cleanly, any other code as an error. */
  close(result: StatusObject): void {
    if (result.code === status.OK) this.call.end();
    else this.call.emit('error', result);
  }

  private write(answer: Buffer): void {
    if (this.call.write(answer) || this.waitingForDrain) return;
    // A client that does not read stops being read from, so what it is owed stays bounded.
    this.waitingForDrain = true;
    this.call.pause();
    this.call.once('drain', () => {
      this.waitingForDrain = false;
      this.call.resume();
    });
  }
}
