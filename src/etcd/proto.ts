import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MethodDefinition } from '@grpc/grpc-js';
import { Reader, Root, Service, util, type IConversionOptions, type Method, type Type } from 'protobufjs';

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
 * etcd's own camelCase such as `peerURLs`, the files being read with their
 * case kept), int64 as decimal strings (no precision loss), enums by name,
 * bytes as Buffers, absent fields absent: what @grpc/proto-loader gives with
 * these options, which the proxy used before building its own table.
 */
const DECODED_FORM: IConversionOptions = {
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
};

/** One RPC: its path, stream kinds and codec (objects of etcd's messages to and from wire bytes). */
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

let cachedRoot: Root | undefined;

/**
 * Message nesting protobufjs accepts. Its default (100, protoc's) is below
 * what etcd takes: a Txn nested in a Txn as deep as --max-txn-ops allows
 * (128 levels by default, two messages each). The bound still stops a
 * hostile request long before the JavaScript stack would. Set with the
 * reflection, before any codec runs: the limit is protobufjs's, one per
 * process, and a read-only Txn that did not decode would be taken for a write.
 */
const MESSAGE_NESTING_LIMIT = 1_024;

/**
 * etcd's .proto files as protobufjs reflection, field names as written,
 * loaded once per process and shared by the gRPC codecs and the JSON
 * gateway. protobufjs directly, not @grpc/proto-loader: the loader also
 * builds a descriptor of every message (and loads descriptor.proto's own
 * reflection for it) that nothing here reads, 1-2 MB of heap for the
 * process's life.
 */
export function etcdProtoRoot(): Root {
  if (cachedRoot === undefined) {
    util.recursionLimit = Math.max(util.recursionLimit, MESSAGE_NESTING_LIMIT);
    Reader.recursionLimit = Math.max(Reader.recursionLimit, MESSAGE_NESTING_LIMIT);
    const base = protoRoot();
    const root = new Root();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(base, target));
    root.loadSync('etcdserverpb/rpc.proto', { keepCase: true });
    root.resolveAll();
    cachedRoot = root;
  }
  return cachedRoot;
}

/** The method table of every service, resolved once per process. */
const methodTables = new Map<EtcdServiceName, ServiceMethods>();

/** One service's methods by name ("Range"), built on first use and kept. */
export function serviceMethods(service: EtcdServiceName): ServiceMethods {
  let table = methodTables.get(service);
  if (table === undefined) {
    const found = etcdProtoRoot().lookup(service);
    if (!(found instanceof Service)) throw new Error(`etcd-cache-proxy: ${service} missing from proto/`);
    table = Object.fromEntries(found.methodsArray.map((method) => [method.name, methodDefinition(service, method.name, method)]));
    methodTables.set(service, table);
  }
  return table;
}

function methodDefinition(service: string, name: string, method: Method): AnyMethodDefinition {
  const request = method.resolvedRequestType;
  const response = method.resolvedResponseType;
  if (request === null || response === null) throw new Error(`etcd-cache-proxy: ${service}.${name} has unresolved types in proto/`);
  return {
    path: `/${service}/${name}`,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
    requestSerialize: serializer(request),
    requestDeserialize: deserializer(request),
    responseSerialize: serializer(response),
    responseDeserialize: deserializer(response),
  };
}

/** An object of `type` to its wire bytes, as proto-loader's serializer does it. */
function serializer(type: Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

/** Wire bytes to an object in DECODED_FORM. */
function deserializer(type: Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), DECODED_FORM);
}

/**
 * One RPC's definition (path, stream kinds, codec), looked up
 * once: a name etcd's .proto does not have is a programming error.
 */
export function etcdMethod(service: EtcdServiceName, method: string): AnyMethodDefinition {
  const definition = serviceMethods(service)[method];
  if (definition === undefined) throw new Error(`etcd-cache-proxy: ${service}.${method} missing from proto/`);
  return definition;
}

/** Raw protobuf bytes pass through unparsed: faster, and fields a newer etcd adds survive. */
export const passBytes = (message: Buffer): Buffer => message;

/** The short name ("KV") used in metrics labels and logs. */
export function shortServiceName(service: EtcdServiceName): string {
  return service.slice('etcdserverpb.'.length);
}
