import type { HistoryRecord } from '../history';

/** One thing the proxy got wrong, with the shortest stretch of history that shows it. */
export interface Violation {
  /** Which check found it (answers, freshness, monotonic, watch, writes, auth, convergence). */
  readonly check: string;
  readonly message: string;
  /** The records that show it: the answer, and what it contradicts. */
  readonly evidence: readonly HistoryRecord[];
}
