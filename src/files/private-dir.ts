import { chmodSync, lstatSync, mkdirSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';

/** The proxy's own directories: the mirror, login hashes and snapshots are nobody else's to read. */
export const PRIVATE_DIR_MODE = 0o700;
/** Every file the proxy writes: LMDB's data.mdb and lock.mdb, snapshots, offline-logins.json. */
export const PRIVATE_FILE_MODE = 0o600;

/** Bits that let anyone but the owner in. */
const GROUP_OR_OTHER = 0o077;
/** The sticky bit marks a directory many users share (/tmp): not one to make private. */
const STICKY = 0o1000;

/** A data dir holds a handful of entries; a tree far larger is not ours to walk at start. */
const MAX_ENTRIES = 10_000;

export interface PrivateDirReport {
  /** Paths whose modes let others in and were tightened. */
  readonly tightened: readonly string[];
  /** More than MAX_ENTRIES entries: the rest was left as it was. */
  readonly truncated: boolean;
  /** The directory is a shared one (sticky bit): left as it was, with everything in it. */
  readonly shared: boolean;
}

/**
 * Creates `dir` (mode 0700) or, when it exists, takes from it and from
 * everything in it what lets anyone but the owner in: directories become
 * 0700, files 0600. Only entries the proxy's user owns are changed (a proxy
 * run as root does not change other users' files); symbolic links are
 * neither followed nor changed (chmod would change what they point at).
 */
export function makePrivateDir(dir: string): PrivateDirReport {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if ((lstatSync(dir).mode & STICKY) !== 0) return { tightened: [], truncated: false, shared: true };
  const uid = process.getuid?.();
  const tightened: string[] = [];
  const pending = [dir];
  let seen = 0;
  while (pending.length > 0) {
    const path = pending.pop() as string;
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) continue;
    if (needsTightening(stat, uid)) {
      // Only bits are taken away: the owner's own stay as they were.
      chmodSync(path, stat.mode & (stat.isDirectory() ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE));
      tightened.push(path);
    }
    if (!stat.isDirectory()) continue;
    for (const entry of readdirSync(path)) {
      seen += 1;
      if (seen > MAX_ENTRIES) return { tightened, truncated: true, shared: false };
      pending.push(join(path, entry));
    }
  }
  return { tightened, truncated: false, shared: false };
}

function needsTightening(stat: Stats, uid: number | undefined): boolean {
  return (stat.isDirectory() || stat.isFile()) && (stat.mode & GROUP_OR_OTHER) !== 0 && (uid === undefined || stat.uid === uid);
}
