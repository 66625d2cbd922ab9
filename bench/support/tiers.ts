// The regional tier of bench/fleet.ts --tiers: M proxy processes, each with
// its own data dir, given etcd's members and registered under one prefix (as
// the README deploys them); every edge is given all of them.
// Read from the regionals' own /metrics: the edges' mirror watches each one
// holds, and the calls it answered, split by where the answer came from (its
// mirror, or etcd: what a regional passes on is what its edges cost etcd).
// Each keeps its port and data dir for the whole run, so that one killed can
// be started again as an operator restarts it: the same address its edges
// were given, its mirror read back from disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/support/etcd';
import { startProxyProcess, type ProxyProcess } from '../../test/support/proxy';

/** Where the regionals register, as the README's "Running tiers" deploys them: MemberList through one lists them all. */
const RESOLVER_PREFIX = '/etcd-cache-proxy/tier/regional';

/** What the regionals answered so far, summed over them. */
export interface RegionalCalls {
  /** Every call a regional finished. */
  readonly answered: number;
  /** Of those, the ones it passed on to etcd. */
  readonly forwarded: number;
}

export interface Regionals {
  readonly count: number;
  /**
   * All regionals, rotated so that machine i names regional i mod M first: an
   * edge takes its healthy members in turn from the first, and a deployment
   * spreads its edges the same way.
   */
  endpointsFor(machine: number): string[];
  /** Per regional, the mirror watches its edges hold on it (0 for one that does not answer). */
  watchStreams(): Promise<number[]>;
  calls(): Promise<RegionalCalls>;
  /** "127.0.0.1:PORT" of each regional not killed. */
  live(): string[];
  /** SIGKILLs regional `index`: it leaves its edges without a goodbye. */
  kill(index: number): void;
  /** Starts regional `index` again once its process is gone: the same port, data dir and flags. Resolves once it answers /metrics. */
  restart(index: number): Promise<void>;
  /** Stops every regional and removes their data dirs. */
  stop(): Promise<void>;
}

async function metricsText(proxy: ProxyProcess): Promise<string> {
  try {
    return await (await fetch(`http://${proxy.address}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  } catch {
    return ''; // killed, or too busy to answer: it counts nothing
  }
}

/** How one regional is started, kept so that it can be started again the same way. */
interface RegionalSlot {
  readonly port: number;
  readonly dataDir: string;
  readonly args: readonly string[];
  /** The process serving now (a killed one until restarted). */
  process: ProxyProcess;
}

export async function startRegionals(count: number, initialCluster: string): Promise<Regionals> {
  const slots: RegionalSlot[] = [];
  const dataDirs: string[] = [];
  const removeDataDirs = (): void => dataDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
  try {
    for (let i = 0; i < count; i += 1) {
      const port = await freePort();
      const dataDir = mkdtempSync(join(tmpdir(), 'ecp-'));
      dataDirs.push(dataDir);
      const registration = ['--advertise-client-url', `http://127.0.0.1:${port}`, '--resolver-prefix', RESOLVER_PREFIX, '--resolver-ttl', '30'];
      const args = ['--initial-cluster', initialCluster, ...registration, '--log-level', 'warn'];
      slots.push({ port, dataDir, args, process: await startProxyProcess([], args, { port, dataDir }) });
    }
  } catch (error) {
    await Promise.all(slots.map((slot) => slot.process.stop()));
    removeDataDirs();
    throw error;
  }
  const killed = new Set<number>();
  const urls = slots.map((slot) => `http://127.0.0.1:${slot.port}`);
  const live = (): ProxyProcess[] => slots.filter((_, i) => !killed.has(i)).map((slot) => slot.process);
  return {
    count,
    endpointsFor: (machine) => urls.map((_, i) => urls[(machine + i) % urls.length] ?? ''),
    async watchStreams() {
      return Promise.all(
        slots.map(async (slot, i) => {
          if (killed.has(i)) return 0;
          const line = (await metricsText(slot.process)).split('\n').find((l) => l.startsWith('etcd_cache_proxy_watchers{source="mirror"} '));
          return Number(line?.split(' ')[1] ?? 0);
        }),
      );
    },
    async calls() {
      let answered = 0;
      let forwarded = 0;
      for (const proxy of live()) {
        for (const match of (await metricsText(proxy)).matchAll(/^etcd_cache_proxy_grpc_requests_total\{([^}]*)\} (\S+)$/gm)) {
          const n = Number(match[2]);
          answered += n;
          if (match[1]?.includes('source="upstream"') === true) forwarded += n;
        }
      }
      return { answered, forwarded };
    },
    live: () => live().map((p) => p.address),
    kill(index) {
      killed.add(index);
      slots[index]?.process.child.kill('SIGKILL');
    },
    async restart(index) {
      const slot = slots[index];
      if (slot === undefined) throw new Error(`no regional ${index}`);
      await slot.process.stop(); // a killed one: waits for its exit, so that its port is free
      slot.process = await startProxyProcess([], slot.args, { port: slot.port, dataDir: slot.dataDir });
      killed.delete(index);
    },
    async stop() {
      await Promise.all(slots.map((slot) => slot.process.stop()));
      removeDataDirs();
    },
  };
}
