import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthDirectory } from '../auth/directory';
import { JwtVerifier } from '../auth/jwt';
import { LoginLimiter } from '../auth/login-limits';
import { OFFLINE_LOGINS_FILE, OfflineLogins } from '../auth/offline-logins';
import { ConfigError } from '../config';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { ProxyConfig } from '../settings/types';
import type { MirrorSide } from './sides';

export interface ServingAuth {
  /** Who each token is, what each user may read, decided per request. */
  readonly directory: AuthDirectory;
  /** Logins answered from the data dir while etcd is lost (--auth-offline-login), or null. */
  readonly offlineLogins: OfflineLogins | null;
}

/**
 * etcd's auth as a serving process decides it: the tokens and users it
 * learns, kept in step with the gate (what etcd last said of its auth) and,
 * with --workers, with the other serving processes.
 */
export async function startServingAuth(config: ProxyConfig, side: MirrorSide, metrics: Metrics, log: Logger): Promise<ServingAuth> {
  const { pool, liveness, auth } = side;
  // One process: the counts of offline login attempts are its own; with --workers, the primary's.
  const loginBudget = side.tokens?.loginBudget ?? new LoginLimiter();
  const offlineLogins = config.authOfflineLogin ? await OfflineLogins.open(join(config.dataDir, OFFLINE_LOGINS_FILE), config.authOfflineMaxAgeMs, log, loginBudget) : null;
  const jwt = config.authJwtPubKey === null ? null : jwtVerifier(config.authJwtPubKey);
  const directory = new AuthDirectory(pool, config.authRefreshIntervalMs, log, () => liveness.isLost(), metrics, offlineLogins, jwt);
  // The tokens the proxy issued during an outage end the moment etcd answers again.
  liveness.on('back', () => directory.upstreamBack());
  // etcd's auth revision, kept in the store with the rest of what etcd said of its auth: a JWT issued
  // before it is refused during an outage after a restart too, and what this process learns is kept.
  directory.adoptAuthRevision(auth.state().authRevision);
  auth.onStateChange((state) => directory.adoptAuthRevision(state.authRevision));
  if (side.tokens !== undefined) {
    directory.tellTo(side.tokens.tell);
    side.tokens.onShared(directory);
  } else {
    directory.tellTo({ share: () => undefined, forget: () => undefined, authRevision: (atLeast) => auth.noteAuthRevision(atLeast) });
  }
  return { directory, offlineLogins };
}

/** etcd's JWT public key, or a start-up error that names the file. */
function jwtVerifier(file: string): JwtVerifier {
  try {
    return new JwtVerifier(readFileSync(file));
  } catch (error) {
    throw new ConfigError([`--auth-jwt-pub-key ${file}: ${error instanceof Error ? error.message : String(error)}`]);
  }
}
