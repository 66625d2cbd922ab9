import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { CLIENT_PORT_ENV, INSTANCE_ID_ENV, isToPrimary, type ToPrimary, type ToWorker } from './messages';

/** A worker that dies within this long of its start is restarted after a pause, not at once (a crash loop). */
const CRASH_LOOP_MS = 5_000;
const RESTART_PAUSE_MS = 1_000;

export interface ServingProcessesOptions {
  readonly count: number;
  readonly instanceId: string;
  /** The client port the primary bound (the flag may say 0). */
  readonly clientPort: number;
  readonly shutdownGraceMs: number;
  readonly onMessage: (worker: Worker, message: ToPrimary) => void;
  /** The worker exited (whether or not another is started in its place). */
  readonly onExit: (worker: Worker) => void;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/**
 * The N serving processes of --workers, each in its place 1..N (the
 * `worker` label of its metrics): one that exits is started again in the
 * same place, after a pause when it died young.
 */
export class ServingProcesses {
  private readonly slots = new Map<Worker, number>();
  private stopping = false;

  constructor(private readonly options: ServingProcessesOptions) {
    for (let slot = 1; slot <= options.count; slot += 1) this.fork(slot);
  }

  get all(): readonly Worker[] {
    return [...this.slots.keys()];
  }

  /** The worker's place, as its metrics are labelled. */
  labelOf(worker: Worker): string {
    return String(this.slots.get(worker) ?? worker.id);
  }

  send(worker: Worker, message: ToWorker): void {
    if (worker.isConnected()) worker.send(message);
  }

  broadcast(message: ToWorker, except?: Worker): void {
    for (const worker of this.slots.keys()) if (worker !== except) this.send(worker, message);
  }

  /** SIGTERM to each (each drains within its grace period); one that hangs past it is cut. */
  async close(): Promise<void> {
    this.stopping = true;
    const workers = this.all;
    const exits = workers.map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
    for (const worker of workers) worker.process.kill('SIGTERM');
    const cut = setTimeout(() => {
      for (const worker of this.slots.keys()) worker.process.kill('SIGKILL');
    }, this.options.shutdownGraceMs + 5_000);
    await Promise.all(exits);
    clearTimeout(cut);
  }

  private fork(slot: number): void {
    const { instanceId, clientPort, onMessage, log } = this.options;
    const worker = cluster.fork({ [INSTANCE_ID_ENV]: instanceId, [CLIENT_PORT_ENV]: String(clientPort) });
    const startedAt = Date.now();
    this.slots.set(worker, slot);
    worker.on('message', (message: unknown) => {
      if (isToPrimary(message)) onMessage(worker, message);
    });
    // A message sent as the worker dies fails (EPIPE); its exit follows and is handled there.
    worker.on('error', (error) => log.debug({ worker: worker.process.pid, err: error.message }, 'a message to a serving process was not delivered'));
    worker.on('exit', (code, signal) => {
      this.slots.delete(worker);
      this.options.onExit(worker);
      if (this.stopping) {
        if (code !== 0) log.warn({ worker: worker.process.pid, code, signal }, 'a serving process did not stop cleanly');
        return;
      }
      this.restart(slot, worker, Date.now() - startedAt < CRASH_LOOP_MS, code, signal);
    });
  }

  private restart(slot: number, exited: Worker, quick: boolean, code: number | null, signal: string | null): void {
    this.options.log.error({ worker: exited.process.pid, code, signal, restartInMs: quick ? RESTART_PAUSE_MS : 0 }, 'a serving process exited: starting another');
    this.options.metrics.workerRestarts.inc();
    if (!quick) return this.fork(slot);
    setTimeout(() => {
      if (!this.stopping) this.fork(slot);
    }, RESTART_PAUSE_MS).unref();
  }
}
