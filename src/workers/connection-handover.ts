import type { Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import type { ToWorker } from './messages';

/** Connections accepted while no worker serves (all restarting) wait for one, up to this many. */
const MAX_WAITING_CONNECTIONS = 1_024;

/**
 * The primary's side of the client port: each accepted connection goes to
 * the serving worker with the fewest open, and is closed here once that
 * worker says it holds it; if the worker dies first, it is closed and its
 * client connects again. (Node's cluster would lose a connection handed to
 * a worker at the moment it died: its client would wait for nothing.)
 */
export class ConnectionHandover {
  private readonly serving = new Set<Worker>();
  private readonly open = new Map<Worker, number>();
  private readonly handingOver = new Map<number, { readonly socket: Socket; readonly worker: Worker }>();
  private readonly waiting: Socket[] = [];
  private nextConnection = 0;
  /** Rotates the first candidate, so short-lived connections spread among equals too. */
  private turn = 0;

  constructor(private readonly onServingCount: (count: number) => void) {}

  /** A worker listens now: connections go to it, the waiting ones first. */
  serves(worker: Worker): void {
    this.serving.add(worker);
    this.onServingCount(this.serving.size);
    for (const socket of this.waiting.splice(0)) this.handOver(socket);
  }

  handOver(socket: Socket): void {
    const worker = this.leastBusy();
    if (worker === undefined) {
      if (this.waiting.length >= MAX_WAITING_CONNECTIONS) socket.destroy();
      else this.waiting.push(socket);
      return;
    }
    const id = (this.nextConnection += 1);
    this.handingOver.set(id, { socket, worker });
    this.open.set(worker, (this.open.get(worker) ?? 0) + 1);
    worker.send({ type: 'ecp:connection', id } satisfies ToWorker, socket, { keepOpen: true }, (error) => {
      if (error === null || !this.handingOver.has(id)) return;
      this.handingOver.delete(id);
      socket.destroy();
    });
  }

  /** The worker holds connection `id`: this process's copy closes, the worker's stays open. */
  took(id: number): void {
    const pending = this.handingOver.get(id);
    this.handingOver.delete(id);
    pending?.socket.destroy();
  }

  closed(worker: Worker): void {
    this.open.set(worker, Math.max(0, (this.open.get(worker) ?? 0) - 1));
  }

  /** The worker exited: what was on its way to it is closed (its clients connect again). */
  forget(worker: Worker): void {
    this.serving.delete(worker);
    this.onServingCount(this.serving.size);
    for (const [id, pending] of this.handingOver) {
      if (pending.worker !== worker) continue;
      this.handingOver.delete(id);
      pending.socket.destroy();
    }
    this.open.delete(worker);
  }

  close(): void {
    for (const socket of this.waiting.splice(0)) socket.destroy();
  }

  /** The worker with the fewest connections open; among equals, each in turn. */
  private leastBusy(): Worker | undefined {
    const candidates = [...this.serving];
    this.turn += 1;
    let best: Worker | undefined;
    for (let i = 0; i < candidates.length; i += 1) {
      const worker = candidates[(this.turn + i) % candidates.length];
      if (worker !== undefined && (best === undefined || (this.open.get(worker) ?? 0) < (this.open.get(best) ?? 0))) best = worker;
    }
    return best;
  }
}
