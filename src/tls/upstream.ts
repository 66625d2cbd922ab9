import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { UpstreamTlsConfig } from '../config';
import type { Logger } from '../log';
import { WatchedMaterial } from './watched-material';

export type TlsFiles = UpstreamTlsConfig;

/** Node TLS client options from the upstream material (peer /members over https). */
export function tlsOptions(files: TlsFiles, read: (file: string) => Buffer = (file) => readFileSync(file)): ConnectionOptions {
  return {
    ...(files.caFile === null ? {} : { ca: read(files.caFile) }),
    ...(files.certFile === null ? {} : { cert: read(files.certFile) }),
    ...(files.keyFile === null ? {} : { key: read(files.keyFile) }),
    rejectUnauthorized: !files.insecureSkipVerify,
  };
}

/** Builds gRPC channel credentials for https members from the files. */
export function upstreamCredentialsBuilder(files: TlsFiles): (read: (file: string) => Buffer) => ChannelCredentials {
  return (read) =>
    credentials.createSsl(
      files.caFile === null ? null : read(files.caFile),
      files.keyFile === null ? null : read(files.keyFile),
      files.certFile === null ? null : read(files.certFile),
      files.insecureSkipVerify ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {},
    );
}

export function upstreamTlsFiles(files: TlsFiles): (string | null)[] {
  return [files.caFile, files.certFile, files.keyFile];
}

/**
 * gRPC channel credentials for https members (--cacert, --cert, --key,
 * --insecure-skip-tls-verify), rebuilt when the files change.
 */
export function watchUpstreamCredentials(files: TlsFiles, log: Logger): WatchedMaterial<ChannelCredentials> {
  return new WatchedMaterial('upstream client TLS', upstreamTlsFiles(files), upstreamCredentialsBuilder(files), log);
}
