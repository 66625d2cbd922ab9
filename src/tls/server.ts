import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { ServerTlsConfig } from '../config';
import type { Logger } from '../log';
import { WatchedMaterial } from './watched-material';

/** The client port's certificate (and the CA client certificates must chain to), re-read when the files change. */
export function watchServerContext(config: ServerTlsConfig, log: Logger): WatchedMaterial<SecureContextOptions> {
  return new WatchedMaterial(
    'client port TLS',
    [config.certFile, config.keyFile, config.trustedCaFile],
    (read) => {
      const options: SecureContextOptions = {
        cert: read(config.certFile),
        key: read(config.keyFile),
        ...(config.trustedCaFile === null ? {} : { ca: read(config.trustedCaFile) }),
      };
      // Built once here so a key that does not match its certificate is refused now, not at the next handshake.
      createSecureContext(options);
      return options;
    },
    log,
  );
}
