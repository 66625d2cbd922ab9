import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** Configuration grayscale: what this machine withholds and marks it cannot read. */
export interface GrayscaleMetrics {
  /** Keys under grayscale prefixes whose newest version this machine does not show. */
  readonly grayscaleWithheldKeys: Gauge;
  /** Versions whose grayscale mark could not be read (they apply nowhere). */
  readonly grayscaleMalformedMarks: Counter;
}

export function createGrayscaleMetrics(registry: Registry): GrayscaleMetrics {
  return {
    grayscaleWithheldKeys: new Gauge({
      name: `${METRIC_PREFIX}grayscale_withheld_keys`,
      help: 'Keys under --grayscale-prefix whose newest version is marked for other machines and not shown here (GET /grayscale lists them)',
      registers: [registry],
    }),
    grayscaleMalformedMarks: new Counter({
      name: `${METRIC_PREFIX}grayscale_malformed_marks_total`,
      help: 'Versions under --grayscale-prefix whose annotations.grayscale could not be read: they apply on no machine',
      registers: [registry],
    }),
  };
}
