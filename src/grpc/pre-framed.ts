import { frameOf } from '../etcd/grpc-frame';

/** The part of grpc-js's server call (server-interceptors.js) that turns an answer into its gRPC frame. */
interface SerializingCall {
  serializeMessage(value: unknown): Buffer;
}

let installed = false;

/**
 * grpc-js frames every answer by copying it behind a new 5-byte prefix
 * (BaseServerInterceptingCall.serializeMessage; it never compresses
 * answers). An answer made with its frame already around it
 * (etcd/grpc-frame.ts: the kept answers of repeated reads, megabytes for a
 * gateway's whole configuration) is sent as that frame instead: measured on
 * a 9.5 MB whole-prefix Range, the copy and the garbage collection it caused
 * were most of the proxy's own CPU per answer. Everything else goes through
 * grpc-js's own code. This is the only method of grpc-js the proxy replaces;
 * if an upgrade moves it, the proxy refuses to start rather than silently
 * copying again.
 */
export function sendPreFramedAnswers(): void {
  if (installed) return;
  // A deep import: grpc-js exports no hook for how answers are framed.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const internals = require('@grpc/grpc-js/build/src/server-interceptors') as { BaseServerInterceptingCall?: { prototype: SerializingCall } };
  const prototype = internals.BaseServerInterceptingCall?.prototype;
  if (prototype === undefined || typeof prototype.serializeMessage !== 'function') {
    throw new Error('etcd-cache-proxy: @grpc/grpc-js frames answers elsewhere now; src/grpc/pre-framed.ts needs a new hook');
  }
  const serialize = prototype.serializeMessage;
  prototype.serializeMessage = function serializeMessage(this: SerializingCall, value: unknown): Buffer {
    const frame = Buffer.isBuffer(value) ? frameOf(value) : undefined;
    return frame ?? serialize.call(this, value);
  };
  installed = true;
}
