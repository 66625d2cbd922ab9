import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Runs `start`, which spawns the proxy, with every disk sync of the processes
 * it spawns made `delayUs` longer (slow-sync.c, compiled with the machine's C
 * compiler and preloaded), as on a cloud VM's network-attached volume; with
 * 0, as it is. Only what is spawned meanwhile inherits it.
 */
export async function withSlowSync<T>(delayUs: number, start: () => Promise<T>): Promise<T> {
  if (delayUs <= 0) return start();
  const dir = mkdtempSync(join(tmpdir(), 'ecp-slow-sync-'));
  const library = join(dir, 'slow-sync.so');
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', library, join(__dirname, 'slow-sync.c'), '-ldl']);
  process.env.LD_PRELOAD = library;
  process.env.ECP_SYNC_DELAY_US = String(delayUs);
  try {
    return await start();
  } finally {
    delete process.env.LD_PRELOAD;
    delete process.env.ECP_SYNC_DELAY_US;
    // What was spawned has the library mapped since it started: the file can go.
    rmSync(dir, { recursive: true, force: true });
  }
}
