// One raw LeaseKeepAlive stream as a client holds it (grpc-js, etcd's wire
// messages): what it received, when, and how it ended. The same code talks to
// etcd and to the proxy.
import { Metadata, status, type Client, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { serviceMethods } from '../../src/etcd/proto';
import { until } from './until';

const KEEP_ALIVE = serviceMethods('etcdserverpb.Lease').LeaseKeepAlive;
const raw = (message: Buffer): Buffer => message;

export interface KeepAliveReply {
  header?: { cluster_id?: string; member_id?: string; revision?: string; raft_term?: string };
  ID?: string;
  TTL?: string;
}

export interface Ended {
  readonly at: number;
  readonly code: status;
  readonly details: string;
}

/** One LeaseKeepAlive stream as a client holds it: what it received and how it ended. */
export class KeepAliveStream {
  readonly replies: { at: number; reply: KeepAliveReply }[] = [];
  ended: Ended | null = null;
  private readonly stream: ClientDuplexStream<Buffer, Buffer>;
  private readonly waiters: { resolve: (reply: KeepAliveReply) => void; reject: (error: Error) => void }[] = [];

  constructor(client: Client, metadata: Readonly<Record<string, string>> = {}) {
    if (KEEP_ALIVE === undefined) throw new Error('no LeaseKeepAlive in proto/');
    const decode = KEEP_ALIVE.responseDeserialize;
    const sent = new Metadata();
    for (const [name, value] of Object.entries(metadata)) sent.set(name, value);
    this.stream = client.makeBidiStreamRequest(KEEP_ALIVE.path, raw, raw, sent);
    this.stream.on('data', (message: Buffer) => {
      const reply = decode(message) as KeepAliveReply;
      this.replies.push({ at: Date.now(), reply });
      this.waiters.shift()?.resolve(reply);
    });
    this.stream.on('error', () => undefined); // reported through 'status'
    this.stream.on('status', (final: StatusObject) => {
      this.ended = { at: Date.now(), code: final.code, details: final.details };
      for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(`stream ended: ${status[final.code]} ${final.details}`));
    });
  }

  send(id: string): void {
    if (KEEP_ALIVE === undefined) throw new Error('no LeaseKeepAlive in proto/');
    this.stream.write(KEEP_ALIVE.requestSerialize({ ID: id }) as Buffer);
  }

  sendBytes(message: Buffer): void {
    this.stream.write(message);
  }

  /** Sends one keep-alive and resolves with the next answer. */
  ask(id: string): Promise<KeepAliveReply> {
    const answered = new Promise<KeepAliveReply>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.send(id);
    return answered;
  }

  async closed(timeoutMs = 5_000): Promise<Ended> {
    await until('the keep-alive stream to end', () => this.ended !== null, timeoutMs, 20);
    if (this.ended === null) throw new Error('unreachable');
    return this.ended;
  }

  end(): void {
    this.stream.end();
  }

  cancel(): void {
    this.stream.cancel();
  }
}

