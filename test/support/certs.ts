import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM files of a test PKI: one CA, and leaf certificates it signed. */
export interface TestCa {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  /** Issues a certificate for 127.0.0.1/localhost (server and client use); returns its cert and key paths. */
  issue(name: string): { cert: string; key: string };
}

function openssl(args: readonly string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${result.stderr}`);
}

/** A throwaway CA made with the openssl CLI (Debian's openssl package). */
export function createTestCa(name = 'ca', dir = mkdtempSync(join(tmpdir(), 'ecp-pki-'))): TestCa {
  const caKey = join(dir, `${name}.key`);
  const caCert = join(dir, `${name}.crt`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${name} test CA`], dir);
  let serial = 1;
  return {
    dir,
    caCert,
    caKey,
    issue(leaf) {
      const key = join(dir, `${leaf}.key`);
      const csr = join(dir, `${leaf}.csr`);
      const cert = join(dir, `${leaf}.crt`);
      const extensions = join(dir, `${leaf}.ext`);
      writeFileSync(extensions, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${leaf}`], dir);
      serial += 1;
      openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(serial), '-days', '2', '-out', cert, '-extfile', extensions], dir);
      return { cert, key };
    },
  };
}
