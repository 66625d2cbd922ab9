// The memory floor of this stack: a process that loads what the proxy cannot
// do without (grpc-js, lmdb, pino, prom-client), opens an LMDB environment,
// makes a logger and a registry with Node's default metrics, and listens with
// a grpc-js server. What a proxy process holds above this is its own.
//
//   node dist/bench/support/floor-process.js PORT DATA_DIR
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { open } from 'lmdb';
import pino from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';

const port = Number(process.argv[2]);
const dataDir = process.argv[3];
if (!Number.isInteger(port) || dataDir === undefined) throw new Error('usage: floor-process.js PORT DATA_DIR');

const log = pino({ level: 'warn' });
const registry = new Registry();
collectDefaultMetrics({ register: registry });
const db = open({ path: dataDir });
const server = new Server();
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) => {
  if (error) throw error;
  log.info({ port }, 'listening');
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  void db.close().then(() => process.exit(0));
});
