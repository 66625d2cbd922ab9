import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PRIVATE_FILE_MODE } from './private-dir';

/** Bytes gathered before one write call: few syscalls, bounded memory. */
const CHUNK_BYTES = 1024 * 1024;

export interface AtomicWriter {
  write(text: string): Promise<void>;
}

/**
 * Writes a file so that its name only ever shows a complete version: the
 * content goes to a temporary file in the same directory, is flushed to disk,
 * and is renamed over the old one; the directory is flushed too, so the
 * rename survives a power cut. A crash at any moment leaves the previous
 * file whole (and, at worst, a stray temporary file). The file is the
 * proxy user's alone (0600) unless asked otherwise: snapshots and the
 * APISIX export hold the whole configuration, secrets included.
 */
export async function writeAtomically(file: string, fill: (out: AtomicWriter) => Promise<void>, mode = PRIVATE_FILE_MODE): Promise<void> {
  const temporary = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const handle = await open(temporary, 'w', mode);
  let renamed = false;
  try {
    // A leftover temporary file of the same name keeps its old mode through open(): set it.
    await handle.chmod(mode);
    let pending: string[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const text = pending.join('');
      pending = [];
      pendingBytes = 0;
      await handle.write(text);
    };
    await fill({
      async write(text) {
        pending.push(text);
        pendingBytes += text.length;
        if (pendingBytes >= CHUNK_BYTES) await flush();
      },
    });
    await flush();
    await handle.sync();
    await handle.close();
    await rename(temporary, file);
    renamed = true;
    const directory = await open(dirname(file), 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  } finally {
    if (!renamed) {
      await handle.close().catch(() => undefined);
      await rm(temporary, { force: true });
    }
  }
}

/** Temporary files a killed writer left behind in `directory` for `file`. */
export function isLeftoverOf(file: string, entry: string): boolean {
  return entry.startsWith(`.${basename(file)}.`) && entry.endsWith('.tmp');
}
