import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** Serving processes (--workers). */
export interface WorkerMetrics {
  /** Serving processes (--workers) that exited and were started again. */
  readonly workerRestarts: Counter;
  /** Serving processes (--workers) bound to the client port now: below the number asked for, one is down or restarting. */
  readonly workersServing: Gauge;
}

export function createWorkerMetrics(registry: Registry): WorkerMetrics {
  return {
    workerRestarts: new Counter({
      name: `${METRIC_PREFIX}worker_restarts_total`,
      help: 'Serving processes (--workers) that exited unasked and were started again',
      registers: [registry],
    }),
    workersServing: new Gauge({
      name: `${METRIC_PREFIX}workers_serving`,
      help: 'Serving processes (--workers) bound to the client port now',
      registers: [registry],
    }),
  };
}
