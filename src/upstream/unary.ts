import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { etcdMethod, passBytes, type EtcdServiceName } from '../etcd/proto';
import { reasonedCall, type UpstreamReason } from './call-reason';

export interface UnaryOptions {
  readonly deadlineMs: number;
  readonly reason: UpstreamReason;
  readonly metadata?: Metadata;
  /** The answer's response headers, when the member sent any (not on a trailers-only error). */
  readonly onHeaders?: (headers: Metadata) => void;
}

function call<Res>(
  client: Client,
  service: EtcdServiceName,
  method: string,
  request: object,
  options: UnaryOptions,
  deserialize: (bytes: Buffer) => Res,
): Promise<Res> {
  const definition = etcdMethod(service, method);
  return new Promise((resolve, reject) => {
    const pending = client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize,
      deserialize,
      request,
      options.metadata ?? new Metadata(),
      reasonedCall(options.reason, Date.now() + options.deadlineMs),
      (error: ServiceError | null, response?: Res) => {
        if (error !== null) reject(error);
        else resolve(response as Res);
      },
    );
    if (options.onHeaders !== undefined) pending.on('metadata', options.onHeaders);
  });
}

/**
 * One decoded unary call to a member, for the proxy's own use (mirror,
 * probes, read barrier): request and response as proto-loader objects.
 */
export function callUpstream<Res>(client: Client, service: EtcdServiceName, method: string, request: object, options: UnaryOptions): Promise<Res> {
  const definition = etcdMethod(service, method);
  return call(client, service, method, request, options, (bytes) => definition.responseDeserialize(bytes) as Res);
}

/** The same call with the response left as etcd's bytes, for a caller that keeps parts of it as they are (the mirror's lists). */
export function callUpstreamForBytes(client: Client, service: EtcdServiceName, method: string, request: object, options: UnaryOptions): Promise<Buffer> {
  return call(client, service, method, request, options, passBytes);
}
