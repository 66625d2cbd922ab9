import { enableAuth, ROOT_PASSWORD } from '../support/etcd-auth';
import { ClientLogin } from './client-login';
import { prefixEnd } from './traffic';

/** What the fleet's clients may read and write with auth on: the traffic's keys, and nothing past them. */
export const APP_RANGE = { key: '/apisix/', rangeEnd: prefixEnd('/service/') } as const;

const USERS = {
  app: { password: 'app-pw', roles: ['app'] },
  reader: { password: 'reader-pw', roles: ['read-all'] },
  mirror: { password: 'mirror-pw', roles: ['read-mirrored'] },
} as const;

/**
 * Turns etcd's auth on: `app` reads and writes the traffic's keys (every
 * proxy's clients log in as it), `reader` reads everything (the --user of
 * the two proxies that mirror everything), `mirror` reads the two mirrored
 * prefixes (the --user of the third); root is the etcd client's, the history
 * watch's and the compactions'.
 */
export async function turnAuthOn(address: string, mirroredPrefixes: readonly string[]): Promise<void> {
  await enableAuth(
    address,
    [
      { name: 'app', permissions: [{ key: APP_RANGE.key, rangeEnd: APP_RANGE.rangeEnd, type: 'READWRITE' }] },
      { name: 'read-all', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      { name: 'read-mirrored', permissions: mirroredPrefixes.map((prefix) => ({ key: prefix, rangeEnd: prefixEnd(prefix), type: 'READ' as const })) },
    ],
    Object.entries(USERS).map(([name, user]) => ({ name, password: user.password, roles: [...user.roles] })),
  );
}

/** The --user a proxy mirrors with. */
export function proxyUser(mirrorsEverything: boolean): string {
  return mirrorsEverything ? `reader:${USERS.reader.password}` : `mirror:${USERS.mirror.password}`;
}

export function appLogin(): ClientLogin {
  return new ClientLogin('app', USERS.app.password);
}

export function rootLogin(): ClientLogin {
  return new ClientLogin('root', ROOT_PASSWORD);
}
