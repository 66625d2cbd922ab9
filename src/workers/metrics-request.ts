import type { ToPrimary } from './messages';

/** How long a worker's /metrics waits for the primary's sum. */
const SUM_TIMEOUT_MS = 5_000;

/** A worker's /metrics: the sum over every process, asked of the primary by id. */
export class MetricsRequests {
  private nextId = 0;
  private readonly pending = new Map<number, (text: string) => void>();

  constructor(private readonly send: (message: ToPrimary) => void) {}

  readonly scrape = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const id = (this.nextId += 1);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the primary process did not answer with the metrics'));
      }, SUM_TIMEOUT_MS);
      this.pending.set(id, (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      this.send({ type: 'ecp:metrics-request', id });
    });

  answered(id: number, text: string): void {
    this.pending.get(id)?.(text);
    this.pending.delete(id);
  }
}
