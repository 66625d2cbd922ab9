// Integration (the real CLI in its own process, no etcd needed): a process
// loads only what its command and role use. A proxy without --snapshot-url
// holds no object-store SDK, no demo and no snapshot commands, and without
// --snapshot-dir and --config-file no snapshot writer and no YAML; no process
// loads @grpc/proto-loader (its codecs are built from protobufjs); a --workers
// primary holds no serving side, and its workers no mirror keeper. Each
// process lists its loaded modules on SIGUSR2 through a preload.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort, stopChild } from '../support/etcd';
import { servingChildren, trackProcess } from '../support/processes';
import { CLI, REPO_ROOT } from '../support/proxy';
import { until } from '../support/until';

const dir = mkdtempSync(join(tmpdir(), 'ecp-lazy-'));
const PRELOAD = join(dir, 'loaded-modules.cjs');
writeFileSync(
  PRELOAD,
  `process.on('SIGUSR2', () => require('node:fs').writeFileSync(require('node:path').join(${JSON.stringify(dir)}, process.pid + '.json'), JSON.stringify(Object.keys(require.cache))));\n`,
);
const started: ChildProcess[] = [];

after(async () => {
  for (const child of started) await stopChild(child);
  rmSync(dir, { recursive: true, force: true });
});

async function startCli(args: readonly string[]): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const nowhere = `http://127.0.0.1:${await freePort()}`;
  const child = spawn(
    process.execPath,
    ['-r', PRELOAD, '--import', 'tsx', CLI, 'start', '--endpoints', nowhere, '--listen-addr', `127.0.0.1:${port}`, '--data-dir', mkdtempSync(join(dir, 'data-')), '--log-level', 'error', ...args],
    { cwd: REPO_ROOT, stdio: 'ignore' },
  );
  trackProcess(child);
  started.push(child);
  await until(`the proxy on port ${port} to listen`, () => answers(`http://127.0.0.1:${port}/metrics`), 30_000);
  return { child, port };
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

/** Whether `pid` has a handler for SIGUSR2 yet (the preload ran): before, the signal would end it. */
function catchesSigusr2(pid: number): boolean {
  const caught = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return caught !== undefined && ((BigInt(`0x${caught}`) >> 11n) & 1n) === 1n;
}

/** The files `pid` has loaded, relative to the repository ("src/cli.ts", "node_modules/@aws-sdk/..."). */
async function loadedBy(pid: number): Promise<string[]> {
  const file = join(dir, `${pid}.json`);
  rmSync(file, { force: true });
  await until(`pid ${pid} to run its preload`, () => catchesSigusr2(pid), 10_000, 20);
  process.kill(pid, 'SIGUSR2');
  await until(`pid ${pid} to list its modules`, () => existsSync(file), 10_000, 20);
  await until(`pid ${pid}'s list to be whole`, () => readFileSync(file, 'utf8').endsWith(']'), 5_000, 20);
  const root = `${REPO_ROOT}/`;
  return (JSON.parse(readFileSync(file, 'utf8')) as string[]).map((path) => path.replace(/^.*\/node_modules\//, 'node_modules/').replace(root, ''));
}

function matching(files: readonly string[], pattern: RegExp): string[] {
  return files.filter((file) => pattern.test(file));
}

/** What a proxy in its default configuration (no --snapshot-url, --snapshot-dir, --config-file), idle, never loads. */
const NEVER_AT_IDLE = /node_modules\/@aws-sdk\/|^src\/objectstore\/|^src\/demo\/|^src\/workers\/|^src\/snapshot\/|node_modules\/yaml\/|node_modules\/@grpc\/proto-loader\//;

describe('modules loaded at start', () => {
  it('one proxy without --snapshot-url, --snapshot-dir or --config-file loads no object store SDK, no demo, no snapshots, no YAML parser and no proto-loader', async () => {
    const { child } = await startCli([]);
    const files = await loadedBy(child.pid ?? -1);
    assert.ok(files.includes('src/proxy.ts') && files.includes('src/wiring/serving.ts'), 'the list is of this proxy');
    assert.ok(files.some((file) => file.startsWith('node_modules/protobufjs/')), 'the codecs are built');
    assert.deepEqual(matching(files, NEVER_AT_IDLE), []);
  });

  it('with --workers 2 the primary loads no serving side and the workers no mirror keeper', async () => {
    const { child } = await startCli(['--workers', '2']);
    const primary = child.pid ?? -1;
    await until(() => `both workers to run (serving children now: ${servingChildren(primary).join(' ')})`, () => servingChildren(primary).length === 2, 30_000);
    const primaryFiles = await loadedBy(primary);
    assert.ok(primaryFiles.includes('src/wiring/mirror-keeper.ts'), 'the primary keeps the mirror');
    assert.deepEqual(matching(primaryFiles, /^src\/wiring\/serving\.ts$|^src\/gateway\/|^src\/workers\/worker\.ts$|node_modules\/@aws-sdk\/|node_modules\/@grpc\/proto-loader\//), []);
    for (const worker of servingChildren(primary)) {
      const files = await loadedBy(worker);
      assert.ok(files.includes('src/wiring/serving.ts'), 'a worker serves');
      assert.deepEqual(matching(files, /^src\/wiring\/mirror-keeper\.ts$|^src\/workers\/primary\.ts$|node_modules\/@aws-sdk\/|node_modules\/@grpc\/proto-loader\//), []);
    }
  });
});
