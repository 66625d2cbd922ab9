import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { ServerTlsConfig } from '../settings/types';
import type { Logger } from '../log';
import { WatchedMaterial } from './watched-material';

/** Builds the client port's TLS options from the files; a key that does not match its certificate is refused here. */
export function serverOptionsBuilder(config: ServerTlsConfig): (read: (file: string) => Buffer) => SecureContextOptions {
  return (read) => {
    const options: SecureContextOptions = {
      cert: read(config.certFile),
      key: read(config.keyFile),
      ...(config.trustedCaFile === null ? {} : { ca: read(config.trustedCaFile) }),
    };
    createSecureContext(options);
    return options;
  };
}

export function serverTlsFiles(config: ServerTlsConfig): (string | null)[] {
  return [config.certFile, config.keyFile, config.trustedCaFile];
}

/** The client port's certificate (and the CA client certificates must chain to), re-read when the files change. */
export function watchServerContext(config: ServerTlsConfig, log: Logger): WatchedMaterial<SecureContextOptions> {
  return new WatchedMaterial('client port TLS', serverTlsFiles(config), serverOptionsBuilder(config), log);
}
