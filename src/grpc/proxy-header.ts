import { Metadata, ResponderBuilder, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { PROXY_HEADER } from '../etcd/metadata';

/**
 * Puts `x-etcd-cache-proxy: <version>` in the response headers of every gRPC
 * answer this proxy makes or relays, errors included (in a trailers-only
 * answer, with the status). That is how a proxy in front of this one learns
 * that its upstream is a proxy and not an etcd member (it then keeps the
 * endpoints it was given when the member list names only this proxy).
 *
 * Why a response header: it is what the answer itself says, never a guess
 * from an address; etcd never sends it, and the messages stay etcd's bytes
 * (a new field in etcd's protobuf messages would change what clients
 * decode). Why on every answer, not only MemberList and Status: whichever
 * call a client makes tells it, and the stale mark (another header) already
 * travels the same way. Why here, as grpc-js's server interceptor, and not in
 * each handler: handlers send their own headers (the stale mark) or none at
 * all, and this one place merges the header into whatever they send. The
 * JSON gateway is left as etcd's own: tiers talk gRPC.
 */
export function proxyHeaderInterceptor(version: string): ServerInterceptor {
  return (_method, call) => {
    let headersSent = false;
    const responder = new ResponderBuilder()
      .withSendMetadata((metadata, next) => {
        headersSent = true;
        metadata.set(PROXY_HEADER, version);
        next(metadata);
      })
      .withSendStatus((status, next) => {
        if (headersSent) {
          next(status);
          return;
        }
        // A trailers-only answer (an error before any header): the status carries it instead.
        const metadata = status.metadata?.clone() ?? new Metadata();
        metadata.set(PROXY_HEADER, version);
        next({ ...status, metadata });
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
