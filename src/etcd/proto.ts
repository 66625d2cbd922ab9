import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';

/** The etcd services the proxy serves, by their fully qualified gRPC name. */
export const ETCD_SERVICES = [
  'etcdserverpb.KV',
  'etcdserverpb.Watch',
  'etcdserverpb.Lease',
  'etcdserverpb.Cluster',
  'etcdserverpb.Maintenance',
  'etcdserverpb.Auth',
] as const;
export type EtcdServiceName = (typeof ETCD_SERVICES)[number];

/**
 * How decoded messages look: field names as in etcd's .proto (snake_case and
 * etcd's own camelCase such as `peerURLs`), int64 as decimal strings (no
 * precision loss), enums by name, bytes as Buffers, absent fields absent.
 */
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
  includeDirs: [] as string[],
};

export type AnyMethodDefinition = MethodDefinition<object, object>;
export type ServiceMethods = Readonly<Record<string, AnyMethodDefinition>>;

/** Finds proto/ whether running from src/ (tsx) or from dist/ (compiled). */
export function protoRoot(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'proto', 'etcdserverpb', 'rpc.proto');
    if (existsSync(candidate)) return join(dir, 'proto');
  }
  throw new Error(`etcd-cache-proxy: proto/etcdserverpb/rpc.proto not found above ${__dirname}`);
}

let cached: PackageDefinition | undefined;

/** Loads etcd's service definitions once per process; they are immutable. */
export function loadEtcdProto(): PackageDefinition {
  if (cached === undefined) {
    const root = protoRoot();
    cached = loadSync(join(root, 'etcdserverpb', 'rpc.proto'), { ...LOADER_OPTIONS, includeDirs: [root] });
  }
  return cached;
}

export function serviceMethods(service: EtcdServiceName): ServiceMethods {
  const definition = loadEtcdProto()[service];
  if (definition === undefined || !isServiceDefinition(definition)) {
    throw new Error(`etcd-cache-proxy: ${service} missing from proto/`);
  }
  return definition;
}

function isServiceDefinition(value: unknown): value is ServiceMethods {
  return typeof value === 'object' && value !== null && !('format' in value);
}

/** The method table of every service, resolved once per process. */
const methodTables = new Map<EtcdServiceName, ServiceMethods>();

/**
 * One RPC's definition (path, stream kinds, proto-loader codec), looked up
 * once: a name etcd's .proto does not have is a programming error.
 */
export function etcdMethod(service: EtcdServiceName, method: string): AnyMethodDefinition {
  let table = methodTables.get(service);
  if (table === undefined) {
    table = serviceMethods(service);
    methodTables.set(service, table);
  }
  const definition = table[method];
  if (definition === undefined) throw new Error(`etcd-cache-proxy: ${service}.${method} missing from proto/`);
  return definition;
}

/** Raw protobuf bytes pass through unparsed: faster, and fields a newer etcd adds survive. */
export const passBytes = (message: Buffer): Buffer => message;

/** The short name ("KV") used in metrics labels and logs. */
export function shortServiceName(service: EtcdServiceName): string {
  return service.slice('etcdserverpb.'.length);
}
