// The floor of the stack: a bare grpc-js server that answers every
// etcdserverpb.KV/Range with one fixed, pre-encoded RangeResponse from
// memory. Whatever a Node proxy does, it cannot beat this.
//
//   node --import tsx bench/support/floor-server.ts PORT [RESPONSE_FILE] [PROCESSES]
//
// PROCESSES (default 1) > 1 serves the port from that many processes through
// Node's cluster, as the proxy's --workers does: the floor for N workers.
//
// RESPONSE_FILE, when given, holds the encoded RangeResponse to answer with
// (the protobuf message, no gRPC framing); without it the answer is an empty
// Range (a header only).
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { Server, ServerCredentials, type handleUnaryCall } from '@grpc/grpc-js';
import { serviceMethods } from '../../src/etcd/proto';
import { passBytes } from '../../src/etcd/proto';

const port = Number(process.argv[2]);
const responseFile = process.argv[3] === '' ? undefined : process.argv[3];
const processes = Number(process.argv[4] ?? '1');
if (processes > 1 && cluster.isPrimary) serveFromWorkers();
else serve();

/** The primary only forks and says ready once every worker listens. */
function serveFromWorkers(): void {
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === processes) process.stdout.write('ready\n');
  });
  for (let i = 0; i < processes; i += 1) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    process.exit(0);
  });
}

function serve(): void {
  const range = serviceMethods('etcdserverpb.KV').Range;
  if (range === undefined) throw new Error('no KV.Range');
  const answer =
    responseFile === undefined ? range.responseSerialize({ header: { cluster_id: '1', member_id: '2', revision: '3', raft_term: '4' } }) : readFileSync(responseFile);
  const handler: handleUnaryCall<Buffer, Buffer> = (_call, callback) => callback(null, answer);
  // grpc-js sends messages of any size by default; set anyway, as the answer may be megabytes.
  const server = new Server({ 'grpc.max_send_message_length': -1 });
  server.addService(
    { Range: { path: range.path, requestStream: false, responseStream: false, requestSerialize: passBytes, requestDeserialize: passBytes, responseSerialize: passBytes, responseDeserialize: passBytes } },
    { Range: handler },
  );
  server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) => {
    if (error) throw error;
    if (cluster.isPrimary) process.stdout.write('ready\n');
  });
  process.on('SIGTERM', () => server.forceShutdown());
}
