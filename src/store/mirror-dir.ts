import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { makePrivateDir } from '../files/private-dir';
import type { Logger } from '../log';

/**
 * Makes `<dataDir>/mirror` ready to open and returns its path. Read-only (a
 * snapshot of another process's mirror), the environment must already
 * exist. Opened to write, the data dir and everything in it become the
 * proxy user's alone (0700 directories, 0600 files), also where a data dir
 * existed with looser modes; the log is told what was tightened.
 */
export function prepareMirrorDir(dataDir: string, readOnly: boolean, log: Logger | undefined): string {
  const path = join(dataDir, 'mirror');
  if (readOnly) {
    if (!existsSync(join(path, 'data.mdb'))) throw new Error(`etcd-cache-proxy: no mirror in ${dataDir} (expected ${join(path, 'data.mdb')})`);
    return path;
  }
  const { tightened, truncated, shared } = makePrivateDir(dataDir);
  if (shared) log?.warn({ dataDir }, 'data dir is a shared directory (sticky bit): its modes are left as they are; give the proxy a directory of its own');
  makePrivateDir(path);
  if (tightened.length > 0) {
    log?.warn({ dataDir, tightened: tightened.slice(0, 10), count: tightened.length, truncated }, 'data dir was open to other users; its directories are now 0700 and its files 0600');
  }
  return path;
}
