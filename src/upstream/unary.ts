import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { etcdMethod, type EtcdServiceName } from '../etcd/proto';

export interface UnaryOptions {
  readonly deadlineMs: number;
  readonly metadata?: Metadata;
}

/**
 * One decoded unary call to a member, for the proxy's own use (mirror,
 * probes, read barrier): request and response as proto-loader objects.
 */
export function callUpstream<Res>(
  client: Client,
  service: EtcdServiceName,
  method: string,
  request: object,
  options: UnaryOptions,
): Promise<Res> {
  const definition = etcdMethod(service, method);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      options.metadata ?? new Metadata(),
      { deadline: Date.now() + options.deadlineMs },
      (error: ServiceError | null, response?: object) => {
        if (error !== null) reject(error);
        else resolve(response as Res);
      },
    );
  });
}
