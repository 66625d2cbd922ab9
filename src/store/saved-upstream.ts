import type { Database } from 'lmdb';

/** The last good upstream member list, and which discovery settings learned it. */
export interface PersistedMembers {
  /** The discovery settings it was learned under; another setting ignores it. */
  readonly source: string;
  readonly clientUrls: readonly string[];
}

/** What etcd last said of its auth: kept so that a restart during an outage refuses what was refused before. */
export interface PersistedAuthState {
  /** Auth was on upstream. */
  readonly enabled: boolean;
  /** etcd's auth revision when last told (AuthStatus, etcd 3.5+); 0 when not known. */
  readonly authRevision: number;
}

/** Writes the auth state only when it changed: it is checked often and changes seldom. */
export function saveAuthState(table: Database<PersistedAuthState, string> | undefined, state: PersistedAuthState): void {
  const held = table?.get('auth');
  if (held?.enabled !== state.enabled || held.authRevision !== state.authRevision) table?.putSync('auth', state);
}
