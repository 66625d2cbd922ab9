import type { LoginAttempt, LoginBudget, Reserved } from '../auth/login-limits';
import type { ToPrimary } from './messages';

/** How long a worker waits for the primary's answer before it refuses the login (fails closed). */
const RESERVE_TIMEOUT_MS = 2_000;
/** Reservations waiting for the primary at most; more are refused at once. */
const MAX_PENDING = 1_024;

/**
 * A worker's side of the offline login budgets (--workers): the primary
 * holds the counts for every worker, so N workers allow what one process
 * does. Each attempt is reserved there before its password is hashed; an
 * answer that does not come in time refuses the attempt.
 */
export class LoginBudgetClient implements LoginBudget {
  private nextId = 0;
  private readonly pending = new Map<number, (at: number | null) => void>();

  constructor(private readonly send: (message: ToPrimary) => void) {}

  reserve(attempt: LoginAttempt): Promise<Reserved | null> {
    if (this.pending.size >= MAX_PENDING) return Promise.resolve(null);
    const id = (this.nextId += 1);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(id, null), RESERVE_TIMEOUT_MS);
      timer.unref();
      this.pending.set(id, (at) => {
        clearTimeout(timer);
        resolve(at === null ? null : { at });
      });
      this.send({ type: 'ecp:login-reserve', id, attempt });
    });
  }

  /** The primary's answer to reservation `id`. */
  answer(id: number, at: number | null): void {
    const settle = this.pending.get(id);
    this.pending.delete(id);
    settle?.(at);
  }

  giveBack(attempt: LoginAttempt, reserved: Reserved): void {
    this.send({ type: 'ecp:login-give-back', attempt, at: reserved.at });
  }
}
