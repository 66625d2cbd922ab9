import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** One process's registry, as `getMetricsAsJSON` gives it, and the name /metrics gives that process. */
export interface ProcessMetrics {
  /** `mirror` for the process that keeps the mirror, the worker's slot (1..N) for a serving one. */
  readonly process: string;
  readonly metrics: MetricsJson;
}

/**
 * Metrics whose sum would hide the one process in trouble (a stalled event
 * loop, one worker taking every connection): each process keeps its own
 * series, told apart by a `worker` label. Everything else is summed, as one
 * process would have counted it.
 */
const PER_PROCESS = new Set([
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_eventloop_lag_max_seconds',
]);

/** The exposition text of every process's metrics together. */
export async function sumMetrics(parts: readonly ProcessMetrics[]): Promise<string> {
  const labelled = parts.map(({ process, metrics }) =>
    metrics.map((metric) =>
      PER_PROCESS.has(metric.name) ? { ...metric, values: metric.values.map((value) => ({ ...value, labels: { ...value.labels, worker: process } })) } : metric,
    ),
  );
  return AggregatorRegistry.aggregate(labelled).metrics();
}
