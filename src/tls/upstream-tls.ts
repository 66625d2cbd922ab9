import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { UpstreamTlsConfig } from '../settings/types';
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

/** Node's warning code for SNI that carries an IP address. */
const IP_SERVERNAME_WARNING = 'DEP0123';

/**
 * grpc-js names the TLS server after the member's host even when that is an
 * IP address (it offers no way not to), and Node then warns once, on stderr,
 * that RFC 6066 forbids an IP address in SNI. etcd members are dialled by IP
 * as a matter of course and the certificate is still checked against the IP;
 * the warning tells an operator nothing to act on, so that one warning, and
 * only it, is not printed. Every other warning reaches Node's own printer.
 */
export function quietIpServerNameWarning(): void {
  const printers = process.listeners('warning');
  if (printers.length === 0) return; // --no-warnings: nothing is printed anyway
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.code === IP_SERVERNAME_WARNING) return;
    for (const print of printers) print(warning);
  });
}
