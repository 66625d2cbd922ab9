import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Where snapshots being published or fetched are written on their way: in
 * the data dir, on the disk sized for the mirror (a tmpfs /tmp may hold far
 * less), and emptied at every start, so a process killed mid-transfer leaves
 * nothing behind for long.
 */
export async function objectStoreScratch(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'objectstore-tmp');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}
