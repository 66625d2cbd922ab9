// Starts bench/support/relay-floor.ts on a free loopback port, and stops it by pid.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort, stopChild } from '../../test/support/etcd';
import { trackProcess } from '../../test/support/processes';

export interface RelayFloor {
  /** "127.0.0.1:PORT" */
  readonly address: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startRelayFloor(upstream: string, mode: 'grpc-js' | 'http2'): Promise<RelayFloor> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'relay-floor.ts'), String(port), upstream, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  trackProcess(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`relay-floor (${mode}) exited early (${String(code)})`)));
  });
  return { address: `127.0.0.1:${port}`, pid: child.pid ?? -1, stop: () => stopChild(child) };
}
