/**
 * How long the shared upstream stream outlives its last downstream stream:
 * clients that keep-alive with one short stream per renewal (etcd3's
 * keepaliveOnce) would otherwise open and close it every time.
 */
export const IDLE_CLOSE_MS = 2_000;

/** Closes the shared upstream stream IDLE_CLOSE_MS after its last downstream stream ended, unless another came. */
export class IdleClose {
  private timer: NodeJS.Timeout | undefined;

  /** `idle`: still no downstream stream; `close`: ends the upstream stream cleanly. */
  constructor(
    private readonly idle: () => boolean,
    private readonly close: () => void,
  ) {}

  start(): void {
    this.cancel();
    this.timer = setTimeout(() => {
      if (this.idle()) this.close();
    }, IDLE_CLOSE_MS);
    this.timer.unref();
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}
