import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The version in package.json, found whether running from src/ or dist/. */
export function proxyVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'etcd-cache-proxy' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // not this directory; keep walking up
    }
  }
  return 'unknown';
}
