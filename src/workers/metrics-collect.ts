import type { Metrics } from '../metrics';
import { sumMetrics, type ProcessMetrics } from './metrics-sum';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

/** How long a scrape waits for the workers' metrics. */
const COLLECT_TIMEOUT_MS = 2_000;

/** Asks one worker for its metrics, for collection `id`. */
export type AskForMetrics = (id: number) => void;

/**
 * A scrape through any process sums every process's registry: the
 * primary's (the mirror's metrics) and each worker's, each asked by id and
 * waited for at most COLLECT_TIMEOUT_MS.
 */
export class MetricsCollector {
  private nextId = 0;
  private readonly collecting = new Map<number, { readonly parts: ProcessMetrics[]; readonly expected: number; readonly done: () => void }>();

  constructor(private readonly metrics: Metrics) {}

  async collect(sources: readonly AskForMetrics[]): Promise<string> {
    const id = (this.nextId += 1);
    const parts: ProcessMetrics[] = [{ process: 'mirror', metrics: await this.metrics.registry.getMetricsAsJSON() }];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS);
      this.collecting.set(id, {
        parts,
        expected: sources.length + 1,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      for (const ask of sources) ask(id);
      if (sources.length === 0) resolve();
    });
    this.collecting.delete(id);
    return sumMetrics(parts);
  }

  /** One worker's registry, for collection `id` (late or unknown ones are dropped). */
  received(id: number, process: string, metrics: MetricObjectWithValues<MetricValue<string>>[]): void {
    const collect = this.collecting.get(id);
    if (collect === undefined) return;
    collect.parts.push({ process, metrics });
    if (collect.parts.length >= collect.expected) collect.done();
  }
}
