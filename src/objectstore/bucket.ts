import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type _Object,
} from '@aws-sdk/client-s3';
import type { ObjectStoreOptions } from '../settings/types';
import { ObjectTooLarge, readBounded, writeBounded, type WrittenBody } from './bounded-body';
import { keyOf, type SnapshotLocation } from './location';

export type { ObjectStoreOptions } from '../settings/types';

/** Why the store could not do what was asked: each is logged and counted by name, and retried or refused. */
export type ObjectStoreFailure = 'unreachable' | 'denied' | 'missing' | 'failed';

export class ObjectStoreError extends Error {
  constructor(
    readonly failure: ObjectStoreFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ObjectStoreError';
  }
}

export interface StoredObject {
  readonly name: string;
  readonly bytes: number;
}

/** The objects of one snapshot location, named relative to its prefix. */
export interface SnapshotBucket {
  readonly location: SnapshotLocation;
  put(name: string, body: Buffer): Promise<void>;
  putFile(name: string, file: string): Promise<void>;
  /** The object's bytes, or null when there is no such object. Throws ObjectTooLarge past `maxBytes`, before its body is read when the store says its size. */
  get(name: string, maxBytes: number): Promise<Buffer | null>;
  /** The object streamed into `file` (mode 0600), bounded as get() is: its size and SHA-256, or null when there is no such object. */
  download(name: string, file: string, maxBytes: number): Promise<WrittenBody | null>;
  /** Every object whose name starts with `namePrefix`. */
  list(namePrefix: string): Promise<StoredObject[]>;
  delete(names: readonly string[]): Promise<void>;
  close(): void;
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled']);
const MISSING = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);

function classify(error: unknown, what: string): ObjectStoreError {
  if (error instanceof ObjectStoreError) return error;
  if (error instanceof S3ServiceException) {
    const failure: ObjectStoreFailure = DENIED.has(error.name) || error.$metadata.httpStatusCode === 403 ? 'denied' : MISSING.has(error.name) ? 'missing' : 'failed';
    return new ObjectStoreError(failure, `${what}: ${error.name} (HTTP ${error.$metadata.httpStatusCode ?? '?'})`, { cause: error });
  }
  const code = (error as { code?: unknown }).code;
  // No answer at all: connection refused or reset, a name that does not resolve, a timeout.
  if (typeof code === 'string' || (error instanceof Error && error.name === 'TimeoutError')) {
    return new ObjectStoreError('unreachable', `${what}: ${typeof code === 'string' ? code : error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return new ObjectStoreError('failed', `${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/**
 * The SDK's own retries cover a kept-alive connection the store closed just
 * as it was reused (ECONNRESET, on more than one pooled socket at once);
 * anything longer is the caller's schedule, with its own growing delays.
 */
const SDK_ATTEMPTS = 3;
const REQUEST_TIMEOUT_MS = 30_000;

export function openSnapshotBucket(location: SnapshotLocation, options: ObjectStoreOptions): SnapshotBucket {
  const checksum = options.requestChecksum === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  const client = new S3Client({
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    ...(options.endpoint === null ? {} : { endpoint: options.endpoint }),
    requestChecksumCalculation: checksum,
    responseChecksumValidation: checksum,
    maxAttempts: SDK_ATTEMPTS,
    requestHandler: { requestTimeout: REQUEST_TIMEOUT_MS, connectionTimeout: 5_000 },
  });
  const { bucket } = location;
  const keyFor = (name: string): string => keyOf(location, name);
  const namePrefixLength = location.prefix === '' ? 0 : location.prefix.length + 1;

  /** Reads the object's body with `read`; null when there is no such object. */
  const fetchBody = async <T>(name: string, maxBytes: number, read: (body: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T | null> => {
    try {
      const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyFor(name) }));
      const body = answer.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
      // The store says how big the object is before any of it is read: too big, and the connection is dropped unread.
      if (answer.ContentLength !== undefined && answer.ContentLength > maxBytes) {
        body?.destroy?.();
        throw new ObjectTooLarge(name, maxBytes, answer.ContentLength);
      }
      return await read(body ?? (async function* () {})());
    } catch (error) {
      if (error instanceof ObjectTooLarge) throw error;
      const failure = classify(error, `download of ${name}`);
      if (failure.failure === 'missing' && !(error instanceof S3ServiceException && error.name === 'NoSuchBucket')) return null;
      throw failure;
    }
  };

  return {
    location,
    async put(name, body) {
      try {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyFor(name), Body: body, ContentLength: body.length }));
      } catch (error) {
        throw classify(error, `upload of ${name}`);
      }
    },
    async putFile(name, file) {
      try {
        const { size } = await stat(file);
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyFor(name), Body: createReadStream(file), ContentLength: size }));
      } catch (error) {
        throw classify(error, `upload of ${name}`);
      }
    },
    get: (name, maxBytes) => fetchBody(name, maxBytes, (body) => readBounded(body, name, maxBytes)),
    download: (name, file, maxBytes) => fetchBody(name, maxBytes, (body) => writeBounded(body, file, name, maxBytes)),
    async list(namePrefix) {
      const found: StoredObject[] = [];
      let token: string | undefined;
      try {
        do {
          const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keyFor(namePrefix), ContinuationToken: token }));
          for (const object of page.Contents ?? ([] as _Object[])) {
            if (object.Key !== undefined) found.push({ name: object.Key.slice(namePrefixLength), bytes: object.Size ?? 0 });
          }
          token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
        } while (token !== undefined);
      } catch (error) {
        throw classify(error, `list of ${namePrefix}`);
      }
      return found;
    },
    async delete(names) {
      // S3 takes at most 1000 keys per call.
      for (let i = 0; i < names.length; i += 1000) {
        const batch = names.slice(i, i + 1000);
        try {
          await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((name) => ({ Key: keyFor(name) })), Quiet: true } }));
        } catch (error) {
          throw classify(error, `delete of ${batch.length} objects`);
        }
      }
    },
    close: () => client.destroy(),
  };
}
