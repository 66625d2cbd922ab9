import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/**
 * An object's body, read no further than a bound: what the store says of
 * an object's size is checked before its body is read, and what arrives is
 * counted, so a store (or anyone who may write it) that sends more than it
 * said still gets no further than the bound, in memory or on disk.
 */
export class ObjectTooLarge extends Error {
  constructor(
    readonly object: string,
    readonly maxBytes: number,
    /** What the store said or sent, as far as it was counted. */
    readonly bytes: number,
    /** What had reached the disk when it was stopped (0: refused before its body was read). */
    readonly written = 0,
  ) {
    super(`${object}: ${bytes} bytes${bytes > maxBytes ? '' : ' or more'}, more than the ${maxBytes} bytes allowed`);
    this.name = 'ObjectTooLarge';
  }
}

export interface WrittenBody {
  readonly bytes: number;
  readonly sha256: string;
}

/** The whole body in memory, at most `maxBytes`. */
export async function readBounded(body: AsyncIterable<Uint8Array>, object: string, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > maxBytes) throw new ObjectTooLarge(object, maxBytes, bytes);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, bytes);
}

/**
 * The body streamed into `file` (created, mode 0600), at most `maxBytes` of
 * it: a chunk that would pass the bound is never written. Its size and
 * SHA-256 are taken on the way.
 */
export async function writeBounded(body: AsyncIterable<Uint8Array>, file: string, object: string, maxBytes: number): Promise<WrittenBody> {
  const hash = createHash('sha256');
  let bytes = 0;
  const handle = await open(file, 'w', 0o600).catch((error: unknown) => Promise.reject(localFailure(file, error)));
  try {
    for await (const chunk of body) {
      if (bytes + chunk.length > maxBytes) throw new ObjectTooLarge(object, maxBytes, bytes + chunk.length, bytes);
      bytes += chunk.length;
      hash.update(chunk);
      await handle.write(chunk).catch((error: unknown) => Promise.reject(localFailure(file, error)));
    }
  } finally {
    await handle.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** A failure of this machine's disk (ENOSPC...), told apart from the store's: its code is not carried over, so it is no "unreachable" store. */
function localFailure(file: string, error: unknown): Error {
  return new Error(`writing ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}
