import { join } from 'node:path';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { protoRoot } from '../../src/etcd/proto';

let cached: PackageDefinition | undefined;

/**
 * etcd's services from proto/ as @grpc/proto-loader builds them, for test
 * and bench clients made with grpc-js's loadPackageDefinition (the proxy
 * itself builds its codecs with protobufjs directly): field names as written,
 * int64 as decimal strings, enums by name, bytes as Buffers.
 */
export function loadEtcdProto(): PackageDefinition {
  cached ??= loadSync(join(protoRoot(), 'etcdserverpb', 'rpc.proto'), {
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: false,
    oneofs: true,
    includeDirs: [protoRoot()],
  });
  return cached;
}
