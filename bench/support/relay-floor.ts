// The floor of a forwarded call: a process that relays every unary KV call
// to one etcd as bytes and does nothing else (no mirror, no auth, no
// metrics, no revision wait). Whatever the proxy adds to a forwarded Put is
// measured against this.
//
//   node --import tsx bench/support/relay-floor.ts PORT UPSTREAM grpc-js|http2
//
// grpc-js: a grpc-js server relaying through a grpc-js client, the two parts
// the proxy's forward path is built on. http2: Node's own HTTP/2 server and
// client session, gRPC framing passed through untouched: what the runtime
// costs without grpc-js, to show how much of a forward is grpc-js's.
import http2 from 'node:http2';
import { Client, Metadata, Server, ServerCredentials, credentials, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { passBytes, serviceMethods } from '../../src/etcd/proto';

const port = Number(process.argv[2]);
const upstream = process.argv[3] ?? '';
const mode = process.argv[4];

if (mode === 'grpc-js') relayWithGrpcJs();
else if (mode === 'http2') relayWithHttp2();
else throw new Error(`relay-floor: mode must be grpc-js or http2, not ${String(mode)}`);

function relayWithGrpcJs(): void {
  const client = new Client(upstream, credentials.createInsecure());
  const server = new Server();
  const definition: Record<string, object> = {};
  const handlers: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(serviceMethods('etcdserverpb.KV'))) {
    if (method.requestStream || method.responseStream) continue;
    definition[name] = { path: method.path, requestStream: false, responseStream: false, requestSerialize: passBytes, requestDeserialize: passBytes, responseSerialize: passBytes, responseDeserialize: passBytes };
    handlers[name] = (call: { request: Buffer; metadata: Metadata }, callback: (error: ServiceError | null, value?: Buffer) => void) => {
      client.makeUnaryRequest(method.path, passBytes, passBytes, call.request, callback);
    };
  }
  server.addService(definition as never, handlers);
  server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) => {
    if (error) throw error;
    process.stdout.write('ready\n');
  });
  process.on('SIGTERM', () => server.forceShutdown());
}

function relayWithHttp2(): void {
  const session = http2.connect(`http://${upstream}`);
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const request = session.request({ ':method': 'POST', ':path': headers[':path'], 'content-type': 'application/grpc', te: 'trailers' });
    stream.pipe(request);
    const answer: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders = {};
    request.on('data', (chunk: Buffer) => answer.push(chunk));
    request.on('trailers', (received) => {
      trailers = received;
    });
    request.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    request.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        const message = trailers['grpc-message'];
        stream.sendTrailers({ 'grpc-status': String(trailers['grpc-status'] ?? '2'), ...(message === undefined ? {} : { 'grpc-message': String(message) }) });
      });
      stream.end(Buffer.concat(answer));
    });
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => process.exit(0));
}
