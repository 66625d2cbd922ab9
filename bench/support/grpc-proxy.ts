// `etcd grpc-proxy` in front of one endpoint, on a free loopback port, started
// and stopped by pid: the Go proxy the benchmarks compare with.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep, stopChild } from '../../test/support/etcd';
import { trackProcess } from '../../test/support/processes';
import { call, rawClients } from '../../test/support/raw-client';

export interface GrpcProxy {
  /** "127.0.0.1:PORT" */
  readonly address: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startGrpcProxy(endpoint: string): Promise<GrpcProxy> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-grpc-proxy-'));
  const child = spawn('etcd', ['grpc-proxy', 'start', `--endpoints=${endpoint}`, `--listen-addr=127.0.0.1:${port}`, `--data-dir=${dataDir}`], { stdio: 'ignore' });
  trackProcess(child);
  const address = `127.0.0.1:${port}`;
  const probe = rawClients(address);
  const deadline = Date.now() + 10_000;
  while ((await call(probe.kv, 'Range', { key: Buffer.from('x') }, { deadlineMs: 500 })).error !== null) {
    if (Date.now() > deadline) throw new Error('etcd grpc-proxy did not start');
    await sleep(100);
  }
  probe.close();
  return {
    address,
    pid: child.pid ?? -1,
    async stop() {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
