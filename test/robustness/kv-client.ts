import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { call, rawClients, type RawClients } from '../support/raw-client';
import type { ClientLogin } from './client-login';
import type { Answer, CasRequest, Failure, RecordedKv, Request } from './history';

/** The mark the proxy puts on an answer served from its mirror while etcd is lost. */
const STALE_HEADER = 'x-etcd-cache-proxy-stale';
const DEADLINE_MS = 5_000;

interface WireKv {
  readonly key?: Buffer;
  readonly value?: Buffer;
  readonly create_revision?: string;
  readonly mod_revision?: string;
  readonly version?: string;
  readonly lease?: string;
}

interface WireHeader {
  readonly revision?: string;
}

export function recordedKv(kv: WireKv): RecordedKv {
  return {
    key: kv.key?.toString('utf8') ?? '',
    value: kv.value?.toString('utf8') ?? '',
    createRevision: Number(kv.create_revision ?? 0),
    modRevision: Number(kv.mod_revision ?? 0),
    version: Number(kv.version ?? 0),
    lease: kv.lease ?? '0',
  };
}

/** '' is one key: the field is left out (an empty one is not the same to every encoder). */
function rangeEnd(end: string): { range_end?: Buffer } {
  return end === '' ? {} : { range_end: Buffer.from(end) };
}

function failure(error: ServiceError): Failure {
  return { ok: false, code: error.code, message: error.details };
}

/**
 * One client's connection to a proxy (or straight to etcd) for unary KV
 * calls, with raw grpc-js: every answer as the wire carried it, header
 * revision and stale mark included.
 */
export class KvClient {
  private readonly clients: RawClients;

  /** `login`: with etcd's auth on, the token sent with each request is the login's at the time. */
  constructor(readonly address: string, private readonly login: ClientLogin | null = null) {
    this.clients = rawClients(address);
  }

  private metadata(): Metadata {
    return this.login?.metadata() ?? new Metadata();
  }

  get lease(): RawClients['lease'] {
    return this.clients.lease;
  }

  get watch(): RawClients['watch'] {
    return this.clients.watch;
  }

  async send(request: Request): Promise<Answer | Failure> {
    switch (request.kind) {
      case 'range':
        return this.unary('Range', {
          key: Buffer.from(request.key),
          ...rangeEnd(request.rangeEnd),
          revision: String(request.revision),
          serializable: request.serializable,
          limit: String(request.limit),
          count_only: request.countOnly,
          keys_only: request.keysOnly,
        });
      case 'put':
        return this.unary('Put', { key: Buffer.from(request.key), value: Buffer.from(request.value), lease: request.lease });
      case 'delete':
        return this.unary('DeleteRange', { key: Buffer.from(request.key), ...rangeEnd(request.rangeEnd) });
      case 'cas':
        return this.unary('Txn', casTxn(request));
      case 'compact':
        return this.unary('Compact', { revision: String(request.revision), physical: false });
    }
  }

  private async unary(method: string, body: object): Promise<Answer | Failure> {
    const outcome = await call<{ header?: WireHeader; kvs?: WireKv[]; count?: string; more?: boolean; succeeded?: boolean; responses?: { response_range?: { kvs?: WireKv[] } }[] }>(this.clients.kv, method, body, {
      deadlineMs: DEADLINE_MS,
      metadata: this.metadata(),
    });
    if (outcome.error !== null) return failure(outcome.error);
    const response = outcome.response ?? {};
    const stale = outcome.headers?.get(STALE_HEADER)[0] === 'true';
    const revision = Number(response.header?.revision ?? 0);
    if (method === 'Txn') {
      const read = response.responses?.[0]?.response_range?.kvs ?? [];
      return { ok: true, revision, stale, succeeded: response.succeeded === true, kvs: response.succeeded === true ? [] : read.map(recordedKv) };
    }
    if (method !== 'Range') return { ok: true, revision, stale };
    return { ok: true, revision, stale, kvs: (response.kvs ?? []).map(recordedKv), count: Number(response.count ?? 0), more: response.more === true };
  }

  close(): void {
    this.clients.close();
  }
}

/** If the key's mod revision is as expected, put; else read the key (what the failure answer carries). */
function casTxn(request: CasRequest): object {
  const key = Buffer.from(request.key);
  return {
    compare: [{ result: 'EQUAL', target: 'MOD', key, mod_revision: String(request.ifModRevision) }],
    success: [{ request_put: { key, value: Buffer.from(request.value), lease: request.lease } }],
    failure: [{ request_range: { key } }],
  };
}
