import { spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Mounts a tmpfs of `sizeBytes` on `dir` (as root); returns why not when the machine does not allow it. */
export function mountTmpfs(dir: string, sizeBytes: number): { ok: true } | { ok: false; reason: string } {
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], { encoding: 'utf8', timeout: 10_000 });
  if (result.error !== undefined) return { ok: false, reason: `mount: ${result.error.message}` };
  if (result.status !== 0) return { ok: false, reason: `mount -t tmpfs exited ${result.status}: ${result.stderr.trim()}` };
  return { ok: true };
}

/** Unmounts `dir` (lazily: a process that still has a file open there does not keep the mount). */
export function unmountTmpfs(dir: string): void {
  spawnSync('umount', ['-l', dir], { timeout: 10_000 });
}

const FILL_CHUNK_BYTES = 1 << 20;
const FILL_PAGE_BYTES = 4_096;

/**
 * Writes `name` in `dir` until the file system says ENOSPC (by 1 MiB, then
 * by pages, so that not even a page is left); returns the bytes written and a
 * function that removes the file.
 */
export function fillUp(dir: string, name = 'filler'): { bytes: number; remove: () => void } {
  const path = join(dir, name);
  const fd = openSync(path, 'w', 0o600);
  let bytes = 0;
  try {
    for (const size of [FILL_CHUNK_BYTES, FILL_PAGE_BYTES]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          bytes += writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, remove: () => rmSync(path, { force: true }) };
}
