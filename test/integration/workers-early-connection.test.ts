// Integration (real etcd, the CLI with --workers 2, plain TCP clients): a connection the primary accepts
// while it is still starting (its port listens before the mirror's side has started, and before any
// worker serves) is served once a worker serves. The robustness run's bucket-fallback fault found a
// --workers proxy restarted under traffic unreachable for about 20 s: connections accepted before the
// primary took them were neither served nor closed, and grpc-js waited out its connect timeout on each.
// The window is the primary's start of the mirror's side; with --snapshot-url it empties the data dir's
// objectstore-tmp/ (left full by a process killed mid-transfer), which here holds many files, so that the
// window is wide enough to dial into every time.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';

/** How long an accepted connection may wait for its answer: the workers start within a few seconds. */
const ANSWER_WITHIN_MS = 15_000;

interface Attempt {
  readonly acceptedAt: number;
  answered: boolean;
}

/** HTTP/2's client preface and an empty SETTINGS frame, as a gRPC client opens: the server answers with its SETTINGS. */
const H2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** Connects (once accepted, opens HTTP/2 as a gRPC client does) and records whether any answer came. */
function attempt(port: number, attempts: Attempt[], sockets: Set<Socket>): void {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.add(socket);
  socket.on('error', () => sockets.delete(socket));
  socket.on('connect', () => {
    const record: Attempt = { acceptedAt: performance.now(), answered: false };
    attempts.push(record);
    socket.write(H2_PREFACE);
    socket.once('data', () => {
      record.answered = true;
      socket.destroy();
      sockets.delete(socket);
    });
  });
}

describe('--workers: connections accepted while the proxy starts', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-early-connection-'));
  before(async () => {
    etcd = await startEtcd();
    // What a transfer cut short leaves: the primary removes it before any worker starts.
    for (let d = 0; d < 40; d += 1) {
      const dir = join(dataDir, 'objectstore-tmp', `fetch-${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 500; f += 1) writeFileSync(join(dir, `part-${f}`), 'x');
    }
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('are answered once a worker serves, not held unanswered', async () => {
    const port = await freePort();
    const attempts: Attempt[] = [];
    const sockets = new Set<Socket>();
    let starting = true;
    // Every 5 ms from before the process starts until it serves: some land before it listens
    // (refused), some while the primary starts, some after.
    const dialer = (async () => {
      while (starting) {
        attempt(port, attempts, sockets);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    try {
      // The bucket is never reached: nothing is fetched while etcd answers, and nothing is published.
      const bucket = ['--snapshot-url', 's3://snapshots/proxy', '--s3-endpoint', `http://127.0.0.1:${await freePort()}`, '--s3-force-path-style'];
      proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--shutdown-grace', '1s', ...bucket], { port, dataDir });
    } finally {
      starting = false;
      await dialer;
    }
    const startedAt = performance.now();
    while (attempts.some((a) => !a.answered) && performance.now() - startedAt < ANSWER_WITHIN_MS) await new Promise((resolve) => setTimeout(resolve, 50));
    for (const socket of sockets) socket.destroy();
    const unanswered = attempts.filter((a) => !a.answered);
    assert.ok(attempts.length > 0, 'no connection was accepted while the proxy started');
    assert.equal(unanswered.length, 0, `${unanswered.length} of ${attempts.length} connections accepted while the proxy started had no answer ${ANSWER_WITHIN_MS} ms after it served`);
  });
});
