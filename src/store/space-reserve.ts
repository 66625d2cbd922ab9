import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes kept written (allocated on the disk) past the last page LMDB uses, beyond what the next write is expected to need. */
export const RESERVE_BYTES = 4 * 1024 * 1024;
/** The reserve grows by whole chunks of zeros: one write per MiB, not one per commit. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * Space on the disk claimed for LMDB's next pages before a write needs it.
 * LMDB writes a commit's new pages past its last one; when the disk has no
 * block for them the commit fails, and lmdb-js's failure paths (a page spill
 * that cannot be flushed, a commit aborted midway) have corrupted the
 * process's heap and aborted it (`munmap_chunk(): invalid pointer`). So the
 * data file is extended with zeros ahead of LMDB, by this process's single
 * writer and only between its transactions (nothing else writes pages
 * then), past the last page in use: LMDB's pages land on blocks already
 * allocated, and a full disk fails the extension here, before LMDB is asked
 * to write anything. LMDB never reads past its last page, and a larger file
 * is one it opens as it is.
 */
export class SpaceReserve {
  private readonly fd: number;
  /** The file's size: bytes written up to here are allocated. */
  private reservedTo: number;
  private zeros: Buffer | null = null;

  constructor(
    dir: string,
    /** Bytes up to the end of the last page LMDB uses. */
    private readonly usedBytes: () => number,
  ) {
    this.fd = openSync(join(dir, 'data.mdb'), 'r+');
    this.reservedTo = fstatSync(this.fd).size;
  }

  /** Makes sure the next `needBytes` (and the reserve) past LMDB's last page are allocated; throws the file system's ENOSPC when they cannot be. */
  ensure(needBytes: number): void {
    const want = this.usedBytes() + RESERVE_BYTES + needBytes;
    if (want <= this.reservedTo) return;
    // LMDB may have written past the reserve (a write larger than foreseen): zeros go only past the file's end.
    this.reservedTo = Math.max(this.reservedTo, fstatSync(this.fd).size);
    if (want <= this.reservedTo) return;
    const target = Math.ceil(want / CHUNK_BYTES) * CHUNK_BYTES;
    this.zeros ??= Buffer.alloc(CHUNK_BYTES);
    while (this.reservedTo < target) {
      const length = Math.min(this.zeros.length, target - this.reservedTo);
      this.reservedTo += writeSync(this.fd, this.zeros, 0, length, this.reservedTo);
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}
