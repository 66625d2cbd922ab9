// The regional tier of bench/fleet.ts --tiers: M proxy processes, each with
// its own data dir, given etcd's members and registered under one prefix (as
// the README deploys them); every edge is given all of them.
// Read from the regionals' own /metrics: the edges' mirror watches each one
// holds, and the calls it answered, split by where the answer came from (its
// mirror, or etcd: what a regional passes on is what its edges cost etcd).
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
  stop(): Promise<void>;
}

async function metricsText(proxy: ProxyProcess): Promise<string> {
  try {
    return await (await fetch(`http://${proxy.address}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  } catch {
    return ''; // killed, or too busy to answer: it counts nothing
  }
}

export async function startRegionals(count: number, initialCluster: string): Promise<Regionals> {
  const started: ProxyProcess[] = [];
  const killed = new Set<number>();
  try {
    for (let i = 0; i < count; i += 1) {
      const port = await freePort();
      const registration = ['--advertise-client-url', `http://127.0.0.1:${port}`, '--resolver-prefix', RESOLVER_PREFIX, '--resolver-ttl', '30'];
      started.push(await startProxyProcess([], ['--initial-cluster', initialCluster, ...registration, '--log-level', 'warn'], { port }));
    }
  } catch (error) {
    await Promise.all(started.map((p) => p.stop()));
    throw error;
  }
  const urls = started.map((p) => `http://${p.address}`);
  const live = (): ProxyProcess[] => started.filter((_, i) => !killed.has(i));
  return {
    count,
    endpointsFor: (machine) => urls.map((_, i) => urls[(machine + i) % urls.length] ?? ''),
    async watchStreams() {
      return Promise.all(
        started.map(async (p, i) => {
          if (killed.has(i)) return 0;
          const line = (await metricsText(p)).split('\n').find((l) => l.startsWith('etcd_cache_proxy_watchers{source="mirror"} '));
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
      started[index]?.child.kill('SIGKILL');
    },
    async stop() {
      await Promise.all(started.map((p) => p.stop()));
    },
  };
}
