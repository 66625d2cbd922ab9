interface Waiter {
  readonly revision: number;
  readonly resolve: (reached: boolean) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Calls waiting for the mirror to reach a revision (read barrier, read your
 * writes). Kept sorted by revision so each commit releases a prefix.
 */
export class RevisionWaiters {
  private readonly waiting: Waiter[] = [];

  constructor(private readonly current: () => number) {}

  wait(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.current() >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        revision,
        resolve,
        timer: setTimeout(() => {
          this.remove(waiter);
          resolve(this.current() >= revision);
        }, timeoutMs),
      };
      const index = this.waiting.findIndex((w) => w.revision > revision);
      if (index === -1) this.waiting.push(waiter);
      else this.waiting.splice(index, 0, waiter);
    });
  }

  release(revision: number): void {
    while (this.waiting.length > 0 && (this.waiting[0]?.revision ?? Infinity) <= revision) {
      const waiter = this.waiting.shift();
      if (waiter === undefined) break;
      clearTimeout(waiter.timer);
      waiter.resolve(true);
    }
  }

  releaseAll(): void {
    for (const waiter of this.waiting.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.resolve(this.current() >= waiter.revision);
    }
  }

  private remove(waiter: Waiter): void {
    const index = this.waiting.indexOf(waiter);
    if (index !== -1) this.waiting.splice(index, 1);
  }
}
