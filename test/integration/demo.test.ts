// Integration test: `etcd-cache-proxy demo` (npm run demo) as a newcomer runs
// it, with real etcd and the real proxy it starts; every step it prints is
// asserted, and so is that it leaves nothing behind (processes, directories).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runCli, runCliToExit } from '../support/proxy';
import { until } from '../support/until';

/** The pids and the directory the demo says it started with. */
function startedBy(output: string): { pids: number[]; dir: string } {
  const pids = [...output.matchAll(/\(pid (\d+)\)/g)].map((match) => Number(match[1]));
  const dir = /data, logs: (\S+)/.exec(output)?.[1] ?? '';
  return { pids, dir };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The one line of the output that starts with a check mark or cross and contains `text`. */
function checkLine(output: string, text: string): string {
  const lines = output.split('\n').filter((line) => /^ {2}[✓✗] /.test(line) && line.includes(text));
  assert.equal(lines.length, 1, `one check line with "${text}" in:\n${output}`);
  return lines[0] ?? '';
}

interface RunningDemo {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly pids: number[];
  readonly dir: string;
  out(): string;
  err(): string;
}

/** The demo as its own process, once its output shows `reached`; the pids and directory it printed by then. */
async function runningDemo(what: string, reached: (out: string) => boolean): Promise<RunningDemo> {
  const child = runCli(['demo', '--no-color']);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await until(() => `the demo's ${what}:\n${out}\n${err}`, () => reached(out), 60_000);
  const { pids, dir } = startedBy(out);
  assert.equal(pids.length, 2, out);
  return { child, exited, pids, dir, out: () => out, err: () => err };
}

function assertNothingLeft({ pids, dir }: { readonly pids: readonly number[]; readonly dir: string }): void {
  for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still running`);
  assert.ok(dir !== '' && !existsSync(dir), `${dir} left behind`);
}

describe('npm run demo', () => {
  it('walks a gateway through an etcd outage and a restart, every step checked, and cleans up after itself', async () => {
    const { code, stdout, stderr } = await runCliToExit(['demo', '--no-color']);
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.doesNotMatch(stdout, /\u001b\[/, 'no colour codes with --no-color (and none off a terminal)');
    assert.doesNotMatch(stdout, /✗/);
    for (const heading of ['1. etcd up', '2. etcd killed (SIGKILL)', '3. the proxy restarted while etcd is still down', '4. etcd back']) {
      assert.match(stdout, new RegExp(`^${heading.replace(/[()]/g, '\\$&')}`, 'm'));
    }
    const loaded = Number(/11 keys under \/apisix\/ \(routes, services, upstreams\), revision (\d+)/.exec(stdout)?.[1]);
    assert.ok(loaded > 0, stdout);
    // 1: fresh reads over both transports, a watch.
    assert.match(checkLine(stdout, 'gRPC Range /apisix/'), new RegExp(`✓ .*: 11 keys at revision ${loaded}  \\[`));
    assert.match(checkLine(stdout, 'POST /v3/kv/range'), new RegExp(`11 keys at revision ${loaded}  \\[`));
    // 2: stale-marked reads at the same revision, fast refusals with the proxy's message, the watch still open.
    assert.match(checkLine(stdout, 'declared etcd lost'), /✓ .*\[\d[\d.]* (ms|s) after the kill; --upstream-timeout 3s\]/);
    assert.match(checkLine(stdout, 'gRPC Range still answers'), new RegExp(`11 keys at revision ${loaded}, stale-marked`));
    assert.match(checkLine(stdout, 'JSON range still answers'), new RegExp(`11 keys at revision ${loaded}, stale-marked`));
    assert.match(checkLine(stdout, 'gRPC Put is refused'), /✓ .*UNAVAILABLE "etcd-cache-proxy: upstream cluster unreachable, writes rejected"  \[[\d.]+ ms\]/);
    assert.match(checkLine(stdout, 'JSON put is refused'), /✓ .*HTTP 501 "etcd-cache-proxy: upstream cluster unreachable, writes rejected"/);
    assert.match(checkLine(stdout, 'watch stays open'), /✓ .*\(0 events\)/);
    // 3: a new process answers from disk at once, the watch resumes where it was.
    assert.match(checkLine(stdout, 'first read after the restart'), new RegExp(`✓ .*11 keys at revision ${loaded}, stale-marked, with no etcd to ask`));
    assert.match(checkLine(stdout, 'GET /readyz says'), /✓ GET \/readyz says "stale" from the start/);
    assert.match(checkLine(stdout, 'watch opened again'), new RegExp(`from revision ${loaded + 1}, where it left off`));
    // 4: the change, exactly once, at the revision the write returned.
    const written = Number(/\/apisix\/routes\/1 changed \(methods GET, HEAD\) at revision (\d+)/.exec(stdout)?.[1]);
    assert.equal(written, loaded + 1, stdout);
    assert.match(checkLine(stdout, 'the watch received'), new RegExp(`✓ the watch received 1 event: PUT /apisix/routes/1 at revision ${written};`));
    assert.match(checkLine(stdout, 'reads are fresh again'), new RegExp(`11 keys at revision ${written}  \\[`));
    // 5: the summary, and where to go next.
    assert.match(stdout, /^4\. etcd back +✓ 4\/4 /m);
    assert.match(stdout, /Every check passed/);
    assert.match(stdout, /Next, in README\.md/);

    const started = startedBy(stdout);
    assert.equal(started.pids.length, 2, stdout);
    assertNothingLeft(started);
  });

  it('on Ctrl-C stops what it started, by pid, removes its directory, and exits 130', async () => {
    const demo = await runningDemo('its first step', (out) => out.includes('1. etcd up'));
    // No check that both are alive first: the walkthrough goes on while this test reads its output, and on a
    // loaded machine it may already be in step 2, which kills etcd itself. What Ctrl-C must do is checked below.
    demo.child.kill('SIGINT');
    assert.equal(await demo.exited, 130, `${demo.out()}\n${demo.err()}`);
    // Every process still running is named; on a loaded machine the walkthrough may have reached step 2,
    // which kills etcd itself, before the signal arrived: then only the proxy is left to stop.
    const etcdKilledByStep2 = demo.out().includes('2. etcd killed');
    assert.match(demo.err(), etcdKilledByStep2 ? /interrupted \(SIGINT\); stopped .*proxy \(pid \d+\).*and removed/ : /interrupted \(SIGINT\); stopped .*etcd \(pid \d+\).*and removed/);
    assertNothingLeft(demo);
  });

  it('stops the same way when nobody reads its output any more (npm run demo | head)', async () => {
    const demo = await runningDemo('its setup lines', (out) => /data, logs: \S+/.test(out));
    demo.child.stdout?.destroy();
    assert.equal(await demo.exited, 130, demo.err());
    assert.match(demo.err(), /interrupted \(output closed\); stopped etcd \(pid \d+\), proxy \(pid \d+\) and removed/);
    assertNothingLeft(demo);
  });

  it('says the one command to run when etcd is missing and cannot be installed here', async () => {
    // No PATH: neither etcd nor apt-get can be found.
    const { code, stderr } = await runCliToExit(['demo'], { PATH: '/nonexistent' });
    assert.equal(code, 1);
    assert.match(stderr, /^etcd-cache-proxy demo: etcd not found: run 'sudo apt-get install -y etcd-server' .*then npm run demo again\n$/);
  });
});
