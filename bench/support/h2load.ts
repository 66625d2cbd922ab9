// Driving h2load (Debian's nghttp2-client, in C) and reading its summary.
import { spawn } from 'node:child_process';
import { trackProcess, untrackProcess } from '../../test/support/processes';

/** A gRPC message on the wire: no compression flag, 4-byte big-endian length, the protobuf. */
export function grpcFrame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** The headers a gRPC call needs; h2load sends POST when given a body file (-d). */
export const GRPC_HEADERS = ['content-type: application/grpc', 'te: trailers'] as const;

export interface H2loadRun {
  /** "http://127.0.0.1:PORT/path" */
  readonly url: string;
  readonly bodyFile: string;
  readonly headers: readonly string[];
  /** -n: this many requests in all... */
  readonly requests?: number;
  /** ...or -D: for this long (seconds), after --warm-up-time of `warmUpSeconds`. */
  readonly seconds?: number;
  readonly warmUpSeconds?: number;
  readonly clients: number;
  /** -m: concurrent streams per connection (with --h1, pipelined requests: keep it 1). */
  readonly streams: number;
  /** --h1: HTTP/1.1 instead of HTTP/2. */
  readonly http1?: boolean;
  /**
   * A connection that receives nothing for this long is given up on
   * (--connection-inactivity-timeout; its requests count as failed), and
   * h2load itself is killed after `killAfterSeconds`: a stalled server must
   * end the row, not the benchmark. Both unset: h2load waits forever.
   */
  readonly inactivitySeconds?: number;
  readonly killAfterSeconds?: number;
}

export interface H2loadResult {
  readonly requestsPerSecond: number;
  readonly done: number;
  readonly succeeded: number;
  /** h2load's own count: requests that got no answer or a non-2xx status. */
  readonly failed: number;
  readonly errored: number;
  /** Answers whose HTTP status was not 2xx. */
  readonly non2xx: number;
  /** Response body bytes h2load read (for gRPC: the framed messages, no headers or trailers). */
  readonly dataBytes: number;
  readonly seconds: number;
  /** h2load did not finish within `killAfterSeconds` and was killed: nothing it counted is known. */
  readonly killed: boolean;
  readonly output: string;
}

const number = (pattern: RegExp, text: string): number => Number(pattern.exec(text)?.[1] ?? NaN);

/**
 * Runs h2load to its end. Asynchronously on purpose: the servers under test
 * are children of this process whose stderr it reads (test/support), and a
 * spawnSync would stop this event loop from draining those pipes for the
 * whole run. etcd logs a warning for every read slower than 100 ms (each
 * whole-prefix read under load) and, once the 64 KiB pipe is full, blocks
 * in write(2) inside its read path: linearizable reads then hang for good
 * (seen here after ~860 whole-prefix reads).
 */
export async function runH2load(run: H2loadRun): Promise<H2loadResult> {
  const amount = run.seconds === undefined ? ['-n', String(run.requests ?? 1000)] : ['-D', String(run.seconds), '--warm-up-time', String(run.warmUpSeconds ?? 1)];
  const args = [
    ...amount,
    '-c', String(run.clients),
    '-m', String(run.streams),
    ...(run.http1 === true ? ['--h1'] : []),
    ...(run.inactivitySeconds === undefined ? [] : ['--connection-inactivity-timeout', String(run.inactivitySeconds)]),
    '-d', run.bodyFile,
    ...run.headers.flatMap((header) => ['-H', header]),
    run.url,
  ];
  const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackProcess(child);
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  let killed = false;
  const timer =
    run.killAfterSeconds === undefined
      ? null
      : setTimeout(() => {
          killed = true;
          child.kill('SIGKILL');
        }, run.killAfterSeconds * 1000);
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', (error) => reject(new Error(`h2load: ${error.message} (apt-get install -y nghttp2-client)`)));
      child.once('close', () => resolve());
    });
  } finally {
    if (timer !== null) clearTimeout(timer);
    untrackProcess(child);
  }
  if (killed) {
    output += `\n(h2load killed after ${run.killAfterSeconds ?? '?'} s)`;
    return { requestsPerSecond: NaN, seconds: NaN, done: NaN, succeeded: NaN, failed: NaN, errored: NaN, non2xx: NaN, dataBytes: NaN, killed, output };
  }
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  return {
    killed,
    requestsPerSecond: number(/finished in [^,]+, ([\d.]+) req\/s/, output),
    seconds: parseDuration(/finished in ([\d.]+m?s)/.exec(output)?.[1]),
    done: number(/requests: \d+ total, \d+ started, (\d+) done/, output),
    succeeded: number(/(\d+) succeeded/, output),
    failed: number(/(\d+) failed/, output),
    errored: number(/(\d+) errored/, output),
    non2xx: codes === null ? NaN : Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    dataBytes: number(/\((\d+)\) data/, output),
    output,
  };
}

function parseDuration(text: string | undefined): number {
  if (text === undefined) return NaN;
  return text.endsWith('ms') ? Number(text.slice(0, -2)) / 1000 : Number(text.slice(0, -1));
}
