import { Metadata, ResponderBuilder, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { PROXY_HEADER } from '../etcd/metadata';

/**
 * The services whose answers carry the header: the ones a client asks about
 * the cluster (Cluster.MemberList, Maintenance.Status), which is where a
 * proxy in front of this one looks.
 */
const MARKED_SERVICES = ['/etcdserverpb.Cluster/', '/etcdserverpb.Maintenance/'];

/**
 * Puts `x-etcd-cache-proxy: <version>` in the response headers of every
 * Cluster and Maintenance answer this proxy makes or relays, errors included
 * (in a trailers-only answer, with the status). That is how a proxy in front
 * of this one learns that its upstream is a proxy and not an etcd member,
 * from its member-list refresh and its Status probes (it then keeps the
 * endpoints it was given when the member list names only this proxy).
 *
 * Why a response header: it is what the answer itself says, never a guess
 * from an address; etcd never sends it, and the messages stay etcd's bytes (a
 * new field in etcd's protobuf messages would change what clients decode).
 * The stale mark travels the same way. Why as grpc-js's server interceptor,
 * not in the handlers: handlers send their own headers or none at all, and
 * this one place merges the header into whatever they send. Why not on KV,
 * Watch and Lease answers as well: there it would add grpc-js's interceptor
 * layer (a wrapped call, a wrapped listener and closures, allocated per call)
 * to the calls that are the proxy's whole load, to tell what the member-list
 * refresh and the Status probes already tell.
 * The JSON gateway is left as etcd's own: tiers talk gRPC.
 */
export function proxyHeaderInterceptor(version: string): ServerInterceptor {
  return (method, call) => {
    // Other services' calls go on as grpc-js made them: no layer added. grpc-js only chains what an
    // interceptor returns, so the call it was given is as good (its type names the class, not the interface).
    if (!MARKED_SERVICES.some((prefix) => method.path.startsWith(prefix))) return call as ServerInterceptingCall;
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
