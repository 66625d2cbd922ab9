import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { STALE_HEADER } from '../etcd/metadata';
import { etcdMethod } from '../etcd/proto';

/**
 * The two ways a gateway talks to etcd, as the demo drives them: gRPC (clientv3,
 * etcdctl, the etcd3 package) and etcd's JSON gateway (APISIX), with nothing
 * of the proxy's own code in between but etcd's .proto files.
 */
export interface RangeAnswer {
  readonly keys: number;
  readonly revision: number;
  /** The proxy marked the answer as not confirmed by etcd. */
  readonly stale: boolean;
  /** Values by key. */
  readonly values: ReadonlyMap<string, string>;
}

export type WriteAnswer = { readonly ok: true; readonly revision: number } | { readonly ok: false; readonly code: string; readonly message: string };

/** The end of the range holding every key that starts with `prefix` (etcd's `--prefix`). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  return end;
}

interface WireKeyValue {
  readonly key?: Buffer;
  readonly value?: Buffer;
}

export class GrpcKv {
  private readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure());
  }

  private unary<Res>(method: string, request: object): Promise<{ error: ServiceError | null; response: Res | undefined; stale: boolean }> {
    const definition = etcdMethod('etcdserverpb.KV', method);
    return new Promise((resolve) => {
      let stale = false;
      const call = this.client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        (bytes: Buffer) => definition.responseDeserialize(bytes) as Res,
        request,
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (error: ServiceError | null, response?: Res) => resolve({ error, response, stale }),
      );
      call.on('metadata', (metadata: Metadata) => {
        stale = metadata.get(STALE_HEADER)[0] === 'true';
      });
    });
  }

  async range(prefix: string): Promise<RangeAnswer> {
    const { error, response, stale } = await this.unary<{ header?: { revision?: string }; kvs?: WireKeyValue[] }>('Range', { key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
    if (error !== null || response === undefined) throw new Error(`gRPC Range failed: ${error?.details ?? 'no answer'}`);
    const kvs = response.kvs ?? [];
    return {
      keys: kvs.length,
      revision: Number(response.header?.revision ?? 0),
      stale,
      values: new Map(kvs.map((kv) => [kv.key?.toString() ?? '', kv.value?.toString() ?? ''])),
    };
  }

  async put(key: string, value: string): Promise<WriteAnswer> {
    const { error, response } = await this.unary<{ header?: { revision?: string } }>('Put', { key: Buffer.from(key), value: Buffer.from(value) });
    if (error !== null) return { ok: false, code: status[error.code] ?? String(error.code), message: error.details };
    return { ok: true, revision: Number(response?.header?.revision ?? 0) };
  }

  close(): void {
    this.client.close();
  }
}

const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');
const unb64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64').toString();

/** etcd's JSON gateway, as APISIX calls it: POST /v3/..., base64 keys and values, int64 as strings. */
export class JsonKv {
  constructor(readonly base: string) {}

  async range(prefix: string): Promise<RangeAnswer> {
    const response = await fetch(`${this.base}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(prefix), range_end: b64(prefixEnd(prefix)) }), signal: AbortSignal.timeout(5_000) });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`JSON range answered ${response.status}: ${text}`);
    const body = JSON.parse(text) as { header?: { revision?: string }; kvs?: { key?: string; value?: string }[] };
    const kvs = body.kvs ?? [];
    return {
      keys: kvs.length,
      revision: Number(body.header?.revision ?? 0),
      stale: response.headers.get(STALE_HEADER) === 'true',
      values: new Map(kvs.map((kv) => [unb64(kv.key), unb64(kv.value)])),
    };
  }

  /** A put; a refusal comes back as etcd's JSON error body with an HTTP status. */
  async put(key: string, value: string): Promise<WriteAnswer & { readonly httpStatus: number }> {
    const response = await fetch(`${this.base}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64(key), value: b64(value) }), signal: AbortSignal.timeout(5_000) });
    const body = JSON.parse(await response.text()) as { header?: { revision?: string }; message?: string; code?: number };
    if (response.status === 200) return { ok: true, revision: Number(body.header?.revision ?? 0), httpStatus: 200 };
    return { ok: false, code: String(response.status), message: body.message ?? '', httpStatus: response.status };
  }
}

export interface WatchedEvent {
  readonly type: 'PUT' | 'DELETE';
  readonly key: string;
  readonly value: string;
  readonly revision: number;
  /** performance.now() when it arrived. */
  readonly at: number;
}

/**
 * A watch over the JSON gateway's streamed response, as APISIX keeps one:
 * events as they arrive, whether the stream is still open, and the revision
 * to watch from again after it drops.
 */
export class JsonWatch {
  readonly events: WatchedEvent[] = [];
  /** The revision after the last one this watch has seen (created header or event). */
  nextRevision: number;
  private open = false;
  private readonly abort = new AbortController();
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly base: string,
    private readonly prefix: string,
    startRevision: number,
  ) {
    this.nextRevision = startRevision;
  }

  /** Opens the stream from `nextRevision`; resolves when etcd's "created" answer came. */
  async start(): Promise<void> {
    const response = await fetch(`${this.base}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: b64(this.prefix), range_end: b64(prefixEnd(this.prefix)), start_revision: String(this.nextRevision) } }),
      signal: this.abort.signal,
    });
    if (response.status !== 200 || response.body === null) throw new Error(`watch answered ${response.status}`);
    this.open = true;
    let created: () => void = () => undefined;
    const createdSeen = new Promise<void>((resolve) => (created = resolve));
    this.done = this.read(response.body, created).finally(() => {
      this.open = false;
      created();
    });
    await createdSeen;
    if (!this.open) throw new Error('the watch ended before etcd said it was created');
  }

  isOpen(): boolean {
    return this.open;
  }

  private async read(body: ReadableStream<Uint8Array>, created: () => void): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of body) {
        buffered += decoder.decode(chunk, { stream: true });
        for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line !== '') this.take(line, created);
        }
      }
    } catch {
      // The connection dropped (the proxy stopped, or close() aborted it): the watch is no longer open.
    }
  }

  private take(line: string, created: () => void): void {
    const message = JSON.parse(line) as {
      result?: { header?: { revision?: string }; created?: boolean; events?: { type?: string; kv?: { key?: string; value?: string; mod_revision?: string } }[] };
    };
    const result = message.result;
    if (result === undefined) return;
    if (result.created === true) {
      this.nextRevision = Math.max(this.nextRevision, Number(result.header?.revision ?? 0) + 1);
      created();
    }
    for (const event of result.events ?? []) {
      const revision = Number(event.kv?.mod_revision ?? 0);
      this.events.push({ type: event.type === 'DELETE' ? 'DELETE' : 'PUT', key: unb64(event.kv?.key), value: unb64(event.kv?.value), revision, at: performance.now() });
      this.nextRevision = Math.max(this.nextRevision, revision + 1);
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}
