import { status } from '@grpc/grpc-js';
import type { Core } from '../core/core';
import type { Logger } from '../log';
import { callUnary } from './core-call';
import { dialectFor, type GatewayDialect } from './gateway-dialect';
import { etcdMethod } from '../etcd/proto';
import { goJsonString } from './proto-json';

/**
 * What the proxy reports before it has heard any member's version (started
 * during an outage): the etcd API level it serves (its protocol is 3.4's).
 * Gateways read /version to pick the API they speak; APISIX requires
 * etcdcluster >= 3.4.0.
 */
const API_LEVEL = '3.4.0';
/** A version learned this recently is answered without asking again. */
const FRESH_MS = 5_000;
const STATUS_TIMEOUT_MS = 1_000;

export interface VersionSource {
  /** etcd's /version body: {"etcdserver":"3.4.23","etcdcluster":"3.4.0"}. */
  body(): Promise<string>;
  /**
   * How the upstream's gateway answers, from its version as last learned
   * (etcd 3.4's before any); an old answer is asked again in the background.
   */
  dialect(): GatewayDialect;
}

/**
 * etcd answers /version from itself; the proxy answers with what the
 * upstream member reports in Maintenance.Status (asked through the proxy's
 * own Maintenance service), kept for when the upstream cannot be asked. etcd's
 * cluster version is the members' common major.minor, with patch 0.
 * The version is first asked at once, so that the gateway's own answers
 * (errors, /health) take the upstream's dialect from the first requests on.
 */
export function createVersionSource(core: Core, upstreamLost: () => boolean, log: Logger): VersionSource {
  // The gRPC side's decoder, loaded anyway: the JSON mapping's tables wait for the first JSON request.
  const statusCall = etcdMethod('etcdserverpb.Maintenance', 'Status');
  let known: { server: string; learnedAt: number; dialect: GatewayDialect } | null = null;
  /** The one Status call in flight, shared by everyone who wants a fresh version. */
  let asking: Promise<void> | null = null;

  const method = core.method('/etcdserverpb.Maintenance/Status');
  const ask = async (): Promise<string | null> => {
    if (method?.kind !== 'unary') return null;
    const { status: result, message } = await callUnary(method.handler, Buffer.alloc(0), { metadata: [], timeoutMs: STATUS_TIMEOUT_MS }).outcome;
    if (result.code !== status.OK || message === null) return null;
    const decoded = statusCall.responseDeserialize(message) as { version?: string };
    return typeof decoded.version === 'string' && decoded.version !== '' ? decoded.version : null;
  };
  const fresh = (): boolean => known !== null && Date.now() - known.learnedAt < FRESH_MS;
  const refresh = (): Promise<void> => {
    if (fresh() || upstreamLost()) return Promise.resolve();
    asking ??= ask()
      .then((server) => {
        if (server !== null) known = { server, learnedAt: Date.now(), dialect: dialectFor(server) };
      })
      .finally(() => {
        asking = null;
      });
    return asking;
  };
  const refreshInBackground = (): void => {
    refresh().catch((error: unknown) => log.warn({ err: error }, "could not ask the upstream's version"));
  };
  refreshInBackground();

  return {
    async body() {
      await refresh();
      const server = known?.server ?? API_LEVEL;
      return `{"etcdserver":${goJsonString(server)},"etcdcluster":${goJsonString(clusterVersion(server))}}`;
    },
    dialect() {
      if (!fresh()) refreshInBackground();
      return known?.dialect ?? dialectFor(null);
    },
  };
}

function clusterVersion(server: string): string {
  const match = /^(\d+)\.(\d+)\./.exec(server);
  return match === null ? API_LEVEL : `${match[1]}.${match[2]}.0`;
}
