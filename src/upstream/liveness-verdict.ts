import type { EventEmitter } from 'node:events';
import type { Logger } from '../log';

export interface LivenessEvents {
  /** No member with a leader has answered for the upstream timeout. */
  lost: [];
  back: [];
  /** No member has answered at all for the upstream timeout (lost, and not merely leaderless). */
  silent: [];
  /** The first answer with a leader since this process started. */
  answered: [];
}

/**
 * Whether the upstream is lost (no member with a leader answered for the
 * timeout), silent (no member answered at all) and whether it has ever
 * answered, from the answers it is told of. Each verdict changes with one
 * log line and one event each way.
 */
export class LivenessVerdict {
  /** When a member with a leader last answered. */
  private lastAnswer = Date.now();
  /** When any member last answered, with a leader or without. */
  private lastAnyAnswer = this.lastAnswer;
  private lost = false;
  private silent = false;
  private answered = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly log: Logger,
    private readonly events: EventEmitter<LivenessEvents>,
  ) {}

  /** Turns lost or silent once the timeout has passed without the answers they need. */
  update(): void {
    const silentFor = Date.now() - this.lastAnswer;
    if (!this.lost && silentFor >= this.timeoutMs) {
      this.lost = true;
      this.log.warn({ silentForMs: silentFor }, 'upstream lost: no member answered within the upstream timeout');
      this.events.emit('lost');
    }
    if (!this.silent && Date.now() - this.lastAnyAnswer >= this.timeoutMs) {
      this.silent = true;
      this.log.warn('upstream silent: no member answered at all within the upstream timeout');
      this.events.emit('silent');
    }
  }

  /** A member answered, without a leader. */
  heardLeaderless(): void {
    this.lastAnyAnswer = Date.now();
    if (this.silent) {
      this.silent = false;
      this.log.info('upstream answering again, without a leader');
    }
  }

  /** A member answered with a leader. */
  heard(): void {
    this.heardLeaderless();
    this.lastAnswer = Date.now();
    if (!this.answered) {
      this.answered = true;
      this.events.emit('answered');
    }
    if (this.lost) {
      this.lost = false;
      this.log.info('upstream back');
      this.events.emit('back');
    }
  }

  isLost(): boolean {
    this.update();
    return this.lost;
  }

  isSilent(): boolean {
    this.update();
    return this.silent;
  }

  hasAnswered(): boolean {
    return this.answered;
  }

  /** How long no member with a leader has answered. */
  quietFor(now: number): number {
    return now - this.lastAnswer;
  }
}
