import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../log';

/** How often certificate files are checked for changes. */
export const TLS_RELOAD_POLL_MS = 1_000;

/**
 * TLS material built from files, rebuilt when any of them changes on disk
 * (certificate rotation without a restart). A change that does not load (a
 * key written before its certificate, a half-copied file) keeps the material
 * in use, logs why, and is retried at the next change.
 */
export class WatchedMaterial<T> extends EventEmitter<{ changed: [] }> {
  /** Undefined until first asked for when there are no files (see the constructor). */
  private value: T | undefined;
  private watched: string[] = [];
  private readonly onFileChange = (): void => this.reload();

  constructor(
    private readonly what: string,
    files: readonly (string | null)[],
    private build: (read: (file: string) => Buffer) => T,
    private readonly log: Logger,
  ) {
    super();
    // The first load happens at start, where an unreadable file is a configuration error. Without
    // files nothing can fail to load, and the material is built when first asked for: the upstream
    // credentials of a proxy with no TLS setting are the system's CAs, which OpenSSL holds in about
    // 1.5 MB of native memory, while a proxy whose members are all http:// never uses them.
    if (files.some((file) => file !== null)) this.value = build((file) => readFileSync(file));
    this.watch(files);
  }

  /** Other files (a reloaded configuration): loaded now, or refused with the old ones kept. */
  retarget(files: readonly (string | null)[], build: (read: (file: string) => Buffer) => T): void {
    this.value = build((file) => readFileSync(file));
    this.build = build;
    this.close();
    this.watch(files);
    this.emit('changed');
  }

  private watch(files: readonly (string | null)[]): void {
    this.watched = files.filter((f): f is string => f !== null);
    for (const file of this.watched) watchFile(file, { interval: TLS_RELOAD_POLL_MS, persistent: false }, this.onFileChange);
  }

  current(): T {
    this.value ??= this.build((file) => readFileSync(file));
    return this.value;
  }

  reload(): void {
    try {
      this.value = this.build((file) => readFileSync(file));
    } catch (error) {
      this.log.warn({ err: error instanceof Error ? error.message : String(error), what: this.what }, 'changed TLS files do not load; keeping the ones in use');
      return;
    }
    this.log.info({ what: this.what, files: this.watched }, 'TLS files reloaded');
    this.emit('changed');
  }

  close(): void {
    for (const file of this.watched) unwatchFile(file, this.onFileChange);
  }
}
