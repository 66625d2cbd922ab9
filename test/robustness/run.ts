// `npm run robustness`: a 3-member etcd and a fleet of three proxies, realistic traffic through every proxy
// and straight to etcd, seeded faults, and then the checker over the whole recorded history. Exit code 1 on
// any violation. `--replay FILE` checks a recorded history again.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkHistory, type CheckSummary, type Violation } from './checker/check-history';
import { awaitConvergence, etcdRevision } from './convergence';
import { EtcdEpochs } from './etcd-epochs';
import { DATA_DIR_TMPFS_BYTES, FAULTS, injectFaults, type FaultName } from './faults';
import { startFleet } from './fleet';
import { APP_RANGE, appLogin, rootLogin } from './fleet-auth';
import type { History } from './history';
import { Recording } from './recording';
import { Random } from './rng';
import { controller, gateway, leader, leaseHolder, readerWriter, type ClientContext } from './traffic';

/** After the faults stop, every proxy's mirror equals etcd within this long. */
export const CONVERGENCE_MS = 15_000;

export interface RobustnessOptions {
  readonly durationMs: number;
  readonly seed: number;
  readonly faults: readonly FaultName[];
  /** etcd's auth on: every client logs in, each proxy mirrors as a user of its own. */
  readonly auth?: boolean;
  /** Where the full history is written (for --replay). */
  readonly historyFile?: string;
  /** A directory where each proxy process's log (at info) is written as it exits: `<name>.log`. */
  readonly proxyLogs?: string;
  readonly log: (line: string) => void;
}

export interface RobustnessResult {
  readonly history: History;
  readonly summary: CheckSummary;
}

/** One run: the fleet, the traffic, the faults; then the checks. */
export async function runRobustness(options: RobustnessOptions): Promise<RobustnessResult> {
  const { log } = options;
  const random = new Random(options.seed);
  const auth = options.auth === true;
  // The peer forwarders and the tmpfs data dirs only when a fault needs them: other runs keep the plain fleet.
  const fleet = await startFleet({
    auth,
    peerNetwork: options.faults.includes('partition-member'),
    tmpfsBytes: options.faults.includes('disk-full') ? DATA_DIR_TMPFS_BYTES : undefined,
    bucket: options.faults.includes('bucket-fallback'),
    ...(options.proxyLogs === undefined ? {} : { logDir: options.proxyLogs }),
  });
  if (fleet.tmpfsRefused !== null) log(`disk-full will be skipped: the proxies' data dirs could not be put on a tmpfs (${fleet.tmpfsRefused})`);
  log(`seed ${options.seed}; etcd ${fleet.cluster.members.map((m) => m.clientAddress).join(',')}; proxies ${fleet.proxies.map((p) => `${p.name}=${p.address}`).join(' ')}`);
  const recording = new Recording();
  const epochs = new EtcdEpochs(() => fleet.cluster.members.map((member) => member.clientAddress), () => (auth ? rootLogin() : null));
  let history: History | undefined;
  const extra: Violation[] = [];
  try {
    let trafficOn = true;
    let watchesOn = true;
    let endTraffic: () => void = () => undefined;
    let endWatches: () => void = () => undefined;
    const trafficStopped = new Promise<void>((resolve) => (endTraffic = resolve));
    const watchesStopped = new Promise<void>((resolve) => (endWatches = resolve));
    const clients = startClients(fleet, recording, random, auth, { running: () => trafficOn, stopped: trafficStopped }, { running: () => watchesOn, stopped: watchesStopped });
    const started = performance.now();
    await injectFaults({ fleet, random: random.fork(), recording, epochs, login: auth ? rootLogin() : null, findings: extra }, options.faults, () => performance.now() - started < options.durationMs, log);
    const left = options.durationMs - (performance.now() - started);
    if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
    trafficOn = false;
    endTraffic();
    await clients.traffic;
    const revision = await etcdRevision(fleet, auth ? rootLogin() : null);
    if (!(await epochs.caughtUp(revision, CONVERGENCE_MS))) extra.push({ check: 'harness', message: `etcd's history watch did not reach revision ${revision}`, evidence: [] });
    extra.push(...(await awaitConvergence(fleet, recording, revision, CONVERGENCE_MS, () => (auth ? rootLogin() : null))));
    // The watches have had the convergence time to deliver everything: the checker wants every event in each.
    watchesOn = false;
    endWatches();
    await clients.watches;
    const { etcd, restores } = await epochs.close();
    if (epochs.failure !== null) extra.push({ check: 'harness', message: epochs.failure, evidence: [] });
    // Every client of a proxy logs in as `app`: what it is shown must stay within what `app` may read.
    const readable = auth ? Object.fromEntries([...new Set([...recording.operations, ...recording.watches].map((record) => record.client))].filter((client) => /^p\d/.test(client)).map((client) => [client, [APP_RANGE]])) : undefined;
    history = { seed: options.seed, operations: recording.operations, watches: recording.watches, etcd, ...(restores.length === 0 ? {} : { restores }), faults: recording.faults, leases: recording.leases, ...(readable === undefined ? {} : { readable }) };
  } finally {
    await epochs.close().catch(() => undefined);
    await fleet.stop();
  }
  if (options.historyFile !== undefined) writeFileSync(options.historyFile, JSON.stringify(history));
  const summary = checkHistory(history);
  return { history, summary: { ...summary, violations: [...extra, ...summary.violations] } };
}

interface Switch {
  readonly running: () => boolean;
  readonly stopped: Promise<void>;
}

/** Per proxy: a gateway, a leader loop, a controller and two random clients; and one random client straight on etcd. */
function startClients(fleet: Awaited<ReturnType<typeof startFleet>>, recording: Recording, random: Random, auth: boolean, traffic: Switch, watches: Switch): { traffic: Promise<unknown>; watches: Promise<unknown> } {
  const context = (name: string, via: string, address: () => string, on: Switch): ClientContext => ({
    name,
    via,
    address,
    random: random.fork(),
    recording,
    running: on.running,
    stopped: on.stopped,
    pauseMs: 60,
    // The etcd client is root's; every client of a proxy is app's.
    login: !auth ? null : via === 'etcd' ? rootLogin() : appLogin(),
  });
  const trafficRuns: Promise<void>[] = [];
  const watchRuns: Promise<void>[] = [];
  for (const proxy of fleet.proxies) {
    const address = (): string => proxy.address;
    watchRuns.push(gateway(context(`${proxy.name}-gateway`, proxy.name, address, watches), '/apisix/'));
    // A Kubernetes-like watch: progress notifications on, and a progress request every half second.
    watchRuns.push(gateway(context(`${proxy.name}-watcher`, proxy.name, address, watches), '/service/', { notify: true, everyMs: 500 }));
    trafficRuns.push(leader(context(`${proxy.name}-leader`, proxy.name, address, traffic), '/service/cluster/leader'));
    trafficRuns.push(controller(context(`${proxy.name}-controller`, proxy.name, address, traffic)));
    trafficRuns.push(leaseHolder(context(`${proxy.name}-leases`, proxy.name, address, traffic)));
    for (const n of [1, 2]) trafficRuns.push(readerWriter(context(`${proxy.name}-client${n}`, proxy.name, address, traffic)));
  }
  let turn = 0;
  const anyMember = (): string => fleet.cluster.members[(turn += 1) % fleet.cluster.members.length]?.clientAddress ?? '';
  trafficRuns.push(readerWriter(context('etcd-client', 'etcd', anyMember, traffic)));
  return { traffic: Promise.all(trafficRuns), watches: Promise.all(watchRuns) };
}

/** What a run found, for the terminal. */
export function report(result: Pick<RobustnessResult, 'summary'> & { readonly history: Pick<History, 'seed' | 'faults'> }): string {
  const { summary, history } = result;
  const lines = [
    `seed ${history.seed}: ${summary.operations} requests (${summary.answers} answered), ${summary.watchStreams} watch streams with ${summary.watchEvents} events, ${summary.leases} leases kept alive, ${summary.etcdRevisions} etcd revisions; ${history.faults.length} faults injected`,
    ...history.faults.map((fault) => `  fault at ${Math.round(fault.at)} ms: ${fault.name} ${fault.target}`),
    ...(summary.acrossRestores.records + summary.acrossRestores.leases === 0 ? [] : [`  across restores of etcd: ${summary.acrossRestores.records} records checked against either side, ${summary.acrossRestores.leases} leases left out`]),
    summary.violations.length === 0 ? 'no violations' : `${summary.violations.length} violations:`,
  ];
  for (const violation of summary.violations.slice(0, 20)) {
    lines.push(`  [${violation.check}] ${violation.message}`);
    for (const record of violation.evidence) lines.push(`      ${JSON.stringify(record).slice(0, 600)}`);
  }
  return lines.join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      duration: { type: 'string', default: '60' },
      seed: { type: 'string' },
      faults: { type: 'string', default: FAULTS.join(',') },
      etcd: { type: 'string' },
      history: { type: 'string' },
      auth: { type: 'boolean' },
      replay: { type: 'string' },
      'proxy-logs': { type: 'string' },
    },
  });
  if (values.replay !== undefined) {
    const history = JSON.parse(readFileSync(values.replay, 'utf8')) as History;
    const summary = checkHistory(history);
    process.stdout.write(`${report({ summary, history })}\n`);
    return summary.violations.length === 0 ? 0 : 1;
  }
  const faults = values.faults.split(',').filter((name) => name !== '');
  const unknown = faults.filter((name) => !(FAULTS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown faults: ${unknown.join(', ')} (known: ${FAULTS.join(', ')})\n`);
    return 2;
  }
  if (values.etcd !== undefined) process.env.ETCD_BIN_DIR = values.etcd;
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const historyFile = values.history ?? `robustness-${seed}.json`;
  const result = await runRobustness({ durationMs: Number(values.duration) * 1000, seed, faults: faults as FaultName[], auth: values.auth === true, historyFile, ...(values['proxy-logs'] === undefined ? {} : { proxyLogs: values['proxy-logs'] }), log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`${report(result)}\nhistory: ${historyFile} (check again with --replay ${historyFile})\n`);
  return result.summary.violations.length === 0 ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`robustness run failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(2);
    },
  );
}
