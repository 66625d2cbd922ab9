import { generateKeyPairSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { keyIdOf } from '../files/ed25519-key-file';

export const KEYGEN_USAGE = `  etcd-cache-proxy snapshot keygen --out DIR               an Ed25519 key pair for signed snapshots: DIR/snapshot-sign.key (mode 0600,
                                                             publishers' --snapshot-sign-key) and DIR/snapshot-verify.pub (every proxy's
                                                             --snapshot-verify-key); prints the key id
`;

export const SIGN_KEY_FILE = 'snapshot-sign.key';
export const VERIFY_KEY_FILE = 'snapshot-verify.pub';

type Output = { out: (text: string) => void; err: (text: string) => void };

/** `etcd-cache-proxy snapshot keygen --out DIR`; returns the exit code. Never overwrites a key. */
export async function keygenCommand(args: readonly string[], io: Output): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.out(`Usage:\n${KEYGEN_USAGE}`);
    return 0;
  }
  let out: string | undefined;
  try {
    out = parseArgs({ args: [...args], options: { out: { type: 'string' } }, allowPositionals: false, strict: true }).values.out;
  } catch (error) {
    io.err(`etcd-cache-proxy snapshot keygen: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n${KEYGEN_USAGE}`);
    return 2;
  }
  if (out === undefined || out === '') {
    io.err(`etcd-cache-proxy snapshot keygen: --out DIR is required\n${KEYGEN_USAGE}`);
    return 2;
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signFile = join(out, SIGN_KEY_FILE);
  const verifyFile = join(out, VERIFY_KEY_FILE);
  try {
    await mkdir(out, { recursive: true, mode: 0o700 });
    // 'wx': an existing key is never replaced (publishers and proxies may be using it).
    await writeFile(signFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { flag: 'wx', mode: 0o600 });
    await writeFile(verifyFile, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx', mode: 0o644 });
  } catch (error) {
    io.err(`etcd-cache-proxy snapshot keygen: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  io.out(
    `key id ${keyIdOf(publicKey)}\n` +
      `private key: ${signFile} (mode 0600; publishers only: --snapshot-sign-key)\n` +
      `public key:  ${verifyFile} (every proxy that falls back: --snapshot-verify-key)\n`,
  );
  return 0;
}
