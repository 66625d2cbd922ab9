import { credentials, loadPackageDefinition, Metadata, type ChannelCredentials, type ChannelOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadEtcdProto } from './etcd-proto';

type ClientConstructor = new (address: string, creds: ChannelCredentials, options?: ChannelOptions) => Client;

/** Plain grpc-js clients for each etcd service, built from proto/: no etcd client library in between. */
export interface RawClients {
  readonly kv: Client;
  readonly watch: Client;
  readonly lease: Client;
  readonly cluster: Client;
  readonly maintenance: Client;
  close(): void;
}

export function rawClients(address: string, channelCredentials: ChannelCredentials = credentials.createInsecure(), options: ChannelOptions = {}): RawClients {
  const root = loadPackageDefinition(loadEtcdProto()) as unknown as { etcdserverpb: Record<string, ClientConstructor> };
  const make = (service: string): Client => {
    const Ctor = root.etcdserverpb[service];
    if (Ctor === undefined) throw new Error(`no ${service} in proto/`);
    return new Ctor(address, channelCredentials, options);
  };
  const clients = {
    kv: make('KV'),
    watch: make('Watch'),
    lease: make('Lease'),
    cluster: make('Cluster'),
    maintenance: make('Maintenance'),
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}

export interface UnaryOutcome<T> {
  readonly error: ServiceError | null;
  readonly response: T | undefined;
  /** The response headers the server sent (e.g. x-etcd-cache-proxy-stale). */
  readonly headers: Metadata | null;
}

/** Calls one unary method and resolves with its error or response (never rejects). */
export function call<T = Record<string, unknown>>(
  client: Client,
  method: string,
  request: object,
  options: { deadlineMs?: number; metadata?: Metadata } = {},
): Promise<UnaryOutcome<T>> {
  const fn = (client as unknown as Record<string, unknown>)[method];
  if (typeof fn !== 'function') throw new Error(`no method ${method}`);
  return new Promise((resolve) => {
    const callOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    let headers: Metadata | null = null;
    const pending = (fn as (...args: unknown[]) => { on(event: 'metadata', listener: (m: Metadata) => void): void }).call(
      client,
      request,
      options.metadata ?? new Metadata(),
      callOptions,
      (error: ServiceError | null, response?: T) => resolve({ error, response, headers }),
    );
    pending.on('metadata', (metadata) => {
      headers = metadata;
    });
  });
}
