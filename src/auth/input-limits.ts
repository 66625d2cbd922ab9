/**
 * Bounds on what a client hands the proxy's auth code (names, passwords,
 * tokens), checked before anything is stored, hashed or logged.
 *
 * etcd itself sets no length for user names or passwords beyond its request
 * size (1.5 MiB by default), and its tokens are short: a simple token is 16
 * letters, a dot and a number; a JWT carries a user name, a revision and an
 * expiry (under 1 KiB with RS512 and a long name). The proxy takes names up to
 * 255 bytes and tokens up to 4 KiB into its maps and files; anything longer
 * still goes to etcd while etcd answers (which decides), but is never
 * remembered, and is refused while etcd is down.
 */
export const MAX_USER_NAME_BYTES = 255;
/** bcrypt, which etcd hashes passwords with, reads at most 72 bytes; 1 KiB leaves room for any client. */
export const MAX_PASSWORD_BYTES = 1_024;
export const MAX_TOKEN_BYTES = 4_096;
/** How much of a name a log line shows. */
const LOGGED_NAME_CHARS = 64;

export function isStorableName(name: string): boolean {
  return name !== '' && Buffer.byteLength(name) <= MAX_USER_NAME_BYTES;
}

export function isStorableToken(token: string): boolean {
  return token !== '' && Buffer.byteLength(token) <= MAX_TOKEN_BYTES;
}

export function isAcceptablePassword(password: string): boolean {
  return Buffer.byteLength(password) <= MAX_PASSWORD_BYTES;
}

/** A client-chosen name as a log line may show it: its start, control characters escaped, and its length. */
export function nameForLog(name: string): string {
  const start = name.slice(0, LOGGED_NAME_CHARS).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return name.length > LOGGED_NAME_CHARS ? `${start}… (${name.length} characters)` : start;
}
