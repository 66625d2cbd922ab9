import type { ConfigChanges } from './config-diff';
import type { HostPort } from './etcd/endpoint';
import type { ProxyConfig } from './settings/types';
import { startMirrorKeeper } from './wiring/mirror-keeper';
import { createReconfigure } from './wiring/reconfigure';
import { startServing } from './wiring/serving';
import type { ProxyDeps, ServingSide } from './wiring/sides';

export type { ProxyDeps } from './wiring/sides';

export interface RunningProxy {
  /** The client port actually bound (port 0 in the config picks a free one). */
  readonly address: HostPort;
  /** The --metrics-addr listener, when configured. */
  readonly metricsAddress: HostPort | null;
  /**
   * Graceful stop: stop accepting, end open streams with UNAVAILABLE so
   * clients reconnect elsewhere, let unary calls finish within the grace
   * period, then cut what is left.
   */
  close(): Promise<void>;
  /**
   * Takes over a reloaded configuration without closing connections or
   * watches: member discovery, mode, log level and TLS files change in place;
   * what needs a restart is logged and keeps its old value.
   */
  reconfigure(next: ProxyConfig): ConfigChanges;
}

/** One process: the side that keeps the mirror, and the client port served from it. */
export async function startProxy({ config, log, metrics }: ProxyDeps): Promise<RunningProxy> {
  const keeper = await startMirrorKeeper({ config, log, metrics });
  let serving: ServingSide;
  try {
    serving = await startServing({ config, log, metrics }, keeper.side);
  } catch (error) {
    await keeper.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // Clients that sync their endpoints stop being sent here before the port stops answering.
      await keeper.leaveTier();
      await serving.close();
      await keeper.close();
      log.info('stopped');
    })();
    return closing;
  };
  const reconfigure = createReconfigure(config, log, (next, setting) => {
    keeper.reconfigure(next, setting);
    serving.reconfigure(next, setting);
  });
  return { address: serving.address, metricsAddress: serving.metricsAddress, close, reconfigure };
}
