import { spawn } from 'node:child_process';
import { etcdTool } from './etcd';
import { trackProcess } from './processes';

export interface EtcdctlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface EtcdctlOptions {
  readonly stdin?: string;
  /** Kill etcdctl this long after its last output (for `watch`, which never ends by itself). */
  readonly quietMs?: number;
  readonly timeoutMs?: number;
}

/** Runs etcdctl (API v3; ETCD_BIN_DIR's when set) against one endpoint and collects what it printed. */
export function etcdctl(endpoint: string, args: readonly string[], options: EtcdctlOptions = {}): Promise<EtcdctlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(etcdTool('etcdctl'), [`--endpoints=${endpoint}`, '--command-timeout=10s', ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    trackProcess(child);
    let stdout = '';
    let stderr = '';
    let quietTimer: NodeJS.Timeout | undefined;
    const armQuietTimer = (): void => {
      if (options.quietMs === undefined) return;
      clearTimeout(quietTimer);
      quietTimer = setTimeout(() => child.kill('SIGTERM'), options.quietMs);
    };
    const hardTimer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      armQuietTimer();
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(hardTimer);
      clearTimeout(quietTimer);
      resolve({ code, stdout, stderr });
    });
    // A command that reads no input may exit before its stdin is closed: the write then fails with EPIPE,
    // which says nothing about the command (its exit code and output do).
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
    armQuietTimer();
  });
}
