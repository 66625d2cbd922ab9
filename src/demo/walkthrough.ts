import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ETCD_ERRORS } from '../etcd/errors';
import { GrpcKv, JsonKv, JsonWatch, type RangeAnswer } from './clients';
import { demoEtcd, type DemoEtcd } from './etcd-server';
import { freePort, type Processes } from './processes';
import { demoProxy, type DemoProxy } from './proxy-process';
import type { Report } from './report';
import { changedRoute, CONFIG_PREFIX, sampleConfig } from './sample-config';

/** Writes refused while etcd is lost must come back in milliseconds; a generous bound, as the machine may be busy. */
const FAST_REFUSAL_MS = 500;
/** The proxy's default, spelled out so the output can name it. */
const UPSTREAM_TIMEOUT = '3s';
/** How long the walkthrough waits for something the proxy should do on its own (declare etcd lost, catch up). */
const PATIENCE_MS = 20_000;
/** After the one expected watch event, how long a duplicate would have to show up. */
const DUPLICATE_WINDOW_MS = 1_000;

const ms = (value: number): string => (value < 10 ? `${value.toFixed(1)} ms` : value < 2000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`);

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await work();
  return [result, performance.now() - started];
}

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = PATIENCE_MS): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() > deadline) return false;
    await sleep(20);
  }
}

/** What /readyz says: "synced" while etcd answers, "stale" once the proxy has declared it lost. */
async function readyState(address: string): Promise<string> {
  try {
    const response = await fetch(`http://${address}/readyz`, { signal: AbortSignal.timeout(1000) });
    return ((await response.json()) as { state?: string }).state ?? `not ready (${response.status})`;
  } catch {
    return 'not answering';
  }
}

/** A check failed (and was printed as such): the steps after it depend on it, so the walkthrough stops there. */
class StepFailed extends Error {}

interface Stage {
  readonly report: Report;
  readonly etcd: DemoEtcd;
  readonly proxy: DemoProxy;
  readonly grpc: GrpcKv;
  readonly json: JsonKv;
  readonly keys: number;
}

function must(report: Report, ok: boolean, what: string, measured = ''): void {
  if (!report.check(ok, what, measured)) throw new StepFailed(what);
}

function describeRead(answer: RangeAnswer): string {
  return `${answer.keys} keys at revision ${answer.revision}${answer.stale ? ', stale-marked' : ''}`;
}

/**
 * The walkthrough: a throwaway etcd, the proxy in front of it, an APISIX-like
 * configuration, then etcd killed, the proxy restarted while it is down, and
 * etcd back; every claim checked and timed. Returns the exit code.
 */
export async function runWalkthrough(report: Report, processes: Processes, dir: string, etcdVersion: string): Promise<number> {
  const [etcdClient, etcdPeer, proxyPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = demoEtcd(processes, dir, etcdClient, etcdPeer);
  const proxy = demoProxy(processes, dir, proxyPort, etcd.clientUrl, ['--upstream-timeout', UPSTREAM_TIMEOUT]);
  const grpc = new GrpcKv(proxy.address);
  const json = new JsonKv(`http://${proxy.address}`);
  const config = sampleConfig();
  const stage: Stage = { report, etcd, proxy, grpc, json, keys: config.length };
  let watch: JsonWatch | null = null;
  try {
    await etcd.start();
    await proxy.start();
    report.note(`etcd ${etcdVersion} at ${etcd.clientUrl} (pid ${etcd.pid()}); the proxy at ${proxy.address} (pid ${proxy.pid()}), the way a gateway would reach it`);
    report.note(`data, logs: ${dir} (removed at the end)`);
    if (!(await waitFor(async () => (await readyState(proxy.address)) === 'synced'))) throw new Error(`the proxy did not sync with etcd within ${PATIENCE_MS / 1000} s`);
    const [loaded, loadMs] = await timed(async () => {
      let revision = 0;
      for (const entry of config) {
        const put = await grpc.put(entry.key, entry.value);
        if (!put.ok) throw new Error(`loading ${entry.key}: ${put.code} ${put.message}`);
        revision = put.revision;
      }
      return revision;
    });
    report.note(`loaded an APISIX-like configuration through the proxy: ${config.length} keys under ${CONFIG_PREFIX} (routes, services, upstreams), revision ${loaded}, ${ms(loadMs)}`);

    watch = await stepOneReads(stage, loaded);
    await stepTwoOutage(stage, watch, loaded);
    watch = await stepThreeRestart(stage, watch, loaded);
    await stepFourBack(stage, watch);
  } catch (error) {
    if (!(error instanceof StepFailed)) report.check(false, `the demo could not go on: ${error instanceof Error ? error.message : String(error)}`);
    showLogs(report, proxy, dir);
  } finally {
    await watch?.close();
    grpc.close();
  }
  report.table();
  const failed = report.failed();
  if (failed === 0) {
    report.title('\nEvery check passed: the gateway kept its configuration through the outage, and the restart.');
  } else {
    report.title(`\n${failed} check${failed === 1 ? '' : 's'} failed.`);
  }
  report.note('Next, in README.md: "Pointing APISIX at the proxy", "Behaviour during and after an outage", "Configuration".');
  report.note('Run it in front of your own cluster: npm start -- --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379');
  return failed === 0 ? 0 : 1;
}

async function stepOneReads({ report, grpc, json, keys }: Stage, loaded: number): Promise<JsonWatch> {
  report.step('etcd up: the gateway reads and watches through the proxy', 'etcd up');
  const [viaGrpc, grpcMs] = await timed(() => grpc.range(CONFIG_PREFIX));
  must(report, viaGrpc.keys === keys && viaGrpc.revision >= loaded && !viaGrpc.stale, `gRPC Range ${CONFIG_PREFIX}: ${describeRead(viaGrpc)}`, ms(grpcMs));
  const [viaJson, jsonMs] = await timed(() => json.range(CONFIG_PREFIX));
  must(report, viaJson.keys === keys && viaJson.revision >= loaded && !viaJson.stale, `JSON gateway POST /v3/kv/range: ${describeRead(viaJson)}`, ms(jsonMs));
  const watch = new JsonWatch(json.base, CONFIG_PREFIX, loaded + 1);
  const [, watchMs] = await timed(() => watch.start());
  must(report, watch.isOpen(), `watch opened on ${CONFIG_PREFIX} over the JSON gateway (as APISIX watches), from revision ${loaded + 1}`, ms(watchMs));
  report.headline(`reads ${ms(grpcMs)} (gRPC), ${ms(jsonMs)} (JSON)`);
  return watch;
}

async function stepTwoOutage({ report, etcd, proxy, grpc, json, keys }: Stage, watch: JsonWatch, loaded: number): Promise<void> {
  report.step('etcd killed (SIGKILL): the gateway keeps its configuration', 'etcd killed');
  const killedAt = performance.now();
  await etcd.kill();
  const lost = await waitFor(async () => (await readyState(proxy.address)) === 'stale');
  const lostAfter = performance.now() - killedAt;
  must(report, lost, 'the proxy declared etcd lost (GET /readyz: "state":"stale"), on its own', `${ms(lostAfter)} after the kill; --upstream-timeout ${UPSTREAM_TIMEOUT}`);
  const [viaGrpc, grpcMs] = await timed(() => grpc.range(CONFIG_PREFIX));
  must(report, viaGrpc.keys === keys && viaGrpc.revision === loaded && viaGrpc.stale, `gRPC Range still answers: ${describeRead(viaGrpc)} (x-etcd-cache-proxy-stale: true)`, ms(grpcMs));
  const [viaJson, jsonMs] = await timed(() => json.range(CONFIG_PREFIX));
  must(report, viaJson.keys === keys && viaJson.revision === loaded && viaJson.stale, `JSON range still answers: ${describeRead(viaJson)}`, ms(jsonMs));
  const expected = ETCD_ERRORS.upstreamLost.details;
  const [grpcPut, grpcPutMs] = await timed(() => grpc.put(changedRoute().key, changedRoute().value));
  must(
    report,
    !grpcPut.ok && grpcPut.code === 'UNAVAILABLE' && grpcPut.message === expected && grpcPutMs < FAST_REFUSAL_MS,
    `a gRPC Put is refused at once: ${grpcPut.ok ? `accepted at revision ${grpcPut.revision}` : `${grpcPut.code} "${grpcPut.message}"`}`,
    ms(grpcPutMs),
  );
  const [jsonPut, jsonPutMs] = await timed(() => json.put(changedRoute().key, changedRoute().value));
  must(
    report,
    !jsonPut.ok && jsonPut.httpStatus === 501 && jsonPut.message === expected && jsonPutMs < FAST_REFUSAL_MS,
    `a JSON put is refused at once: HTTP ${jsonPut.httpStatus}${jsonPut.ok ? '' : ` "${jsonPut.message}"`}`,
    ms(jsonPutMs),
  );
  must(report, watch.isOpen() && watch.events.length === 0, `the watch stays open and silent (${watch.events.length} events), as it would on etcd itself while it waits`, `${ms(performance.now() - killedAt)} into the outage`);
  report.headline(`reads ${ms(grpcMs)} (gRPC), ${ms(jsonMs)} (JSON), stale-marked; writes refused in ${ms(Math.max(grpcPutMs, jsonPutMs))}`);
}

async function stepThreeRestart({ report, proxy, grpc, json, keys }: Stage, watch: JsonWatch, loaded: number): Promise<JsonWatch> {
  report.step('the proxy restarted while etcd is still down: reads answer at once, from disk', 'proxy restarted, etcd down');
  const [, stopMs] = await timed(() => proxy.stop());
  must(report, !watch.isOpen(), "the proxy stopped (SIGTERM); the gateway's watch connection dropped with it", `stopped in ${ms(stopMs)}`);
  const { spawnedAt, answeredAt } = await proxy.start();
  const [first, firstMs] = await timed(() => json.range(CONFIG_PREFIX));
  const firstAfter = performance.now() - spawnedAt;
  must(
    report,
    first.keys === keys && first.revision === loaded && first.stale,
    `the first read after the restart: ${describeRead(first)}, with no etcd to ask`,
    `${ms(firstMs)}; ${ms(firstAfter)} after the process started, ${ms(answeredAt - spawnedAt)} of it Node loading the code`,
  );
  const state = await readyState(proxy.address);
  must(report, state === 'stale', `GET /readyz says "${state}" from the start: nothing has confirmed the copy since`);
  const [viaGrpc, grpcMs] = await timed(() => grpc.range(CONFIG_PREFIX));
  must(report, viaGrpc.keys === keys && viaGrpc.revision === loaded && viaGrpc.stale, `gRPC Range: ${describeRead(viaGrpc)}`, ms(grpcMs));
  const reopened = new JsonWatch(json.base, CONFIG_PREFIX, watch.nextRevision);
  const [, watchMs] = await timed(() => reopened.start());
  must(report, reopened.isOpen(), `the watch opened again from revision ${watch.nextRevision}, where it left off (as a gateway does after a dropped connection)`, ms(watchMs));
  report.headline(`first read ${ms(firstMs)}, ${ms(firstAfter)} after the process started`);
  return reopened;
}

async function stepFourBack({ report, etcd, proxy, grpc, json }: Stage, watch: JsonWatch): Promise<void> {
  report.step('etcd back: a route changed, the watch gets exactly that change', 'etcd back');
  const startedAt = performance.now();
  await etcd.start();
  const synced = await waitFor(async () => (await readyState(proxy.address)) === 'synced');
  must(report, synced, 'the proxy found etcd again (GET /readyz: "state":"synced"), on its own', `${ms(performance.now() - startedAt)} after etcd started`);
  const route = changedRoute();
  const sentAt = performance.now();
  const [put, putMs] = await timed(() => grpc.put(route.key, route.value));
  must(report, put.ok, `writes are accepted again: ${route.key} changed (methods GET, HEAD)${put.ok ? ` at revision ${put.revision}` : `: ${put.code} ${put.message}`}`, ms(putMs));
  if (!put.ok) return;
  const delivered = await waitFor(() => watch.events.length > 0, 5_000);
  await sleep(DUPLICATE_WINDOW_MS);
  const [event] = watch.events;
  const exactlyThat = delivered && watch.events.length === 1 && event !== undefined && event.key === route.key && event.value === route.value && event.revision === put.revision;
  const deliveredAfter = event === undefined ? 0 : event.at - sentAt;
  must(
    report,
    exactlyThat,
    `the watch received ${watch.events.length} event${watch.events.length === 1 ? '' : 's'}: ${watch.events.map((e) => `${e.type} ${e.key} at revision ${e.revision}`).join(', ') || 'none'}; nothing repeated, nothing missed`,
    event === undefined ? '' : `${ms(deliveredAfter)} after the write was sent`,
  );
  const [read, readMs] = await timed(() => json.range(CONFIG_PREFIX));
  must(report, !read.stale && read.values.get(route.key) === route.value, `reads are fresh again and show the change: ${describeRead(read)}`, ms(readMs));
  report.headline(`change delivered once, ${ms(deliveredAfter)} after the write was sent`);
}

/** The proxy's last log lines, so a failed check can be understood before the temporary directory goes. */
function showLogs(report: Report, proxy: DemoProxy, dir: string): void {
  for (const [name, file] of [['proxy', proxy.logFile], ['etcd', join(dir, 'etcd.log')]] as const) {
    let lines: string[];
    try {
      lines = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-8);
    } catch {
      continue;
    }
    report.note(`last lines of the ${name}'s log:`);
    for (const line of lines) report.note(`  ${line}`);
  }
}

export function demoDirectory(): string {
  return mkdtempSync(join(tmpdir(), 'etcd-cache-proxy-demo-'));
}
