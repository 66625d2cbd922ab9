import type { AuthDirectory } from '../auth/directory';

export type AdoptingDirectory = Pick<AuthDirectory, 'adopt' | 'adoptForget' | 'adoptAuthRevision'>;

/**
 * What the primary tells a worker of tokens: applied to the worker's
 * directory, or, before it exists (right after hello), kept until it does
 * and then applied in order.
 */
export class TokenInbox {
  private directory: AdoptingDirectory | null = null;
  private readonly early: ((target: AdoptingDirectory) => void)[] = [];

  deliver(apply: (target: AdoptingDirectory) => void): void {
    if (this.directory === null) this.early.push(apply);
    else apply(this.directory);
  }

  /** The directory exists now: what came before it is applied first. */
  open(directory: AdoptingDirectory): void {
    this.directory = directory;
    for (const apply of this.early.splice(0)) apply(directory);
  }
}
