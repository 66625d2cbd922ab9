import { Registry, collectDefaultMetrics } from 'prom-client';
import { createAuthMetrics, type AuthMetrics } from './metrics/auth-metrics';
import { createGrayscaleMetrics, type GrayscaleMetrics } from './metrics/grayscale-metrics';
import { createMirrorMetrics, type MirrorMetrics } from './metrics/mirror-metrics';
import { createRequestMetrics, type RequestMetrics } from './metrics/request-metrics';
import { createSnapshotMetrics, type SnapshotMetrics } from './metrics/snapshot-metrics';
import { createStreamMetrics, type StreamMetrics } from './metrics/stream-metrics';
import { createUpstreamMetrics, type UpstreamMetrics } from './metrics/upstream-metrics';
import { createWorkerMetrics, type WorkerMetrics } from './metrics/worker-metrics';

export { METRIC_PREFIX } from './metrics/metric-prefix';
export { CallCounts, ResultCounts, type CallLabels, type Source } from './metrics/call-counts';

/**
 * The proxy's instruments, all registered on the registry passed in (tests
 * get a fresh one each). Each family is built in its own file under metrics/;
 * callers see one object with every field.
 */
export interface Metrics extends RequestMetrics, UpstreamMetrics, MirrorMetrics, StreamMetrics, AuthMetrics, SnapshotMetrics, WorkerMetrics, GrayscaleMetrics {
  readonly registry: Registry;
}

/** How often the event loop's lag is sampled (nodejs_eventloop_lag_*). */
const LAG_SAMPLE_INTERVAL_MS = 1000;

export function createMetrics(registry: Registry = new Registry()): Metrics {
  // prom-client samples the event loop's lag with a timer, every 10 ms unless told: an idle proxy
  // woke 200 times a second for it, most of its idle CPU (9 ms/s, against 1.7 at one sample a second).
  // A stall still shows, as the one late sample it delays.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LAG_SAMPLE_INTERVAL_MS });
  return {
    registry,
    ...createRequestMetrics(registry),
    ...createUpstreamMetrics(registry),
    ...createMirrorMetrics(registry),
    ...createStreamMetrics(registry),
    ...createAuthMetrics(registry),
    ...createSnapshotMetrics(registry),
    ...createWorkerMetrics(registry),
    ...createGrayscaleMetrics(registry),
  };
}
