// Unit test (no network): the source tree's import graph. Data flows down
// (docs/design.md, "The shape of it"): a folder may import its own or a lower layer, never a
// higher one, and no module reaches itself through its imports.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

const SRC = resolve(__dirname, '..', '..', 'src');

/** Lower numbers sit lower. Top-level files are named with their extension-less path. */
const LAYERS: Readonly<Record<string, number>> = {
  // The settings table and its types: every layer reads its settings from here.
  settings: 0,
  etcd: 0,
  'config-diff': 0,
  log: 0,
  metrics: 0,
  version: 0,
  files: 0,
  store: 1,
  tls: 1,
  upstream: 2,
  mirror: 3,
  watch: 4,
  snapshot: 4,
  api: 5,
  gateway: 6,
  grpc: 6,
  listener: 6,
  auth: 3,
  proxy: 7,
  // The flag parser sits with the processes it starts: nothing below them imports it (they take settings/types).
  config: 7,
  objectstore: 5,
  grayscale: 3,
  workers: 7,
  demo: 7,
  cli: 8,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** "api" for src/api/kv.ts, "proxy" for src/proxy.ts. */
function unitOf(file: string): string {
  const [first = ''] = relative(SRC, file).split('/');
  return first.replace(/\.ts$/, '');
}

interface LocalImport {
  readonly target: string;
  /** `import type`: erased at run time, but still an arrow between layers, and a cycle through it is still two ideas tangled. */
  readonly typeOnly: boolean;
}

function localImports(file: string): LocalImport[] {
  const text = readFileSync(file, 'utf8');
  const found: LocalImport[] = [];
  for (const match of text.matchAll(/^(import type |import |export )[^;]*?from\s*'(\.{1,2}\/[^']+)'/gm)) {
    const spec = match[2];
    if (spec !== undefined) found.push({ target: `${resolve(dirname(file), spec)}.ts`, typeOnly: match[1] === 'import type ' });
  }
  return found;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, localImports(file)]));

test('every source folder has a layer', () => {
  const unknown = [...new Set(files.map(unitOf))].filter((unit) => LAYERS[unit] === undefined);
  assert.deepEqual(unknown, [], 'add new folders to LAYERS');
});

test('no module imports a higher layer', () => {
  const upward: string[] = [];
  for (const [file, imports] of graph) {
    const from = LAYERS[unitOf(file)] ?? Infinity;
    for (const { target } of imports) {
      const to = LAYERS[unitOf(target)] ?? Infinity;
      if (to > from) upward.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
    }
  }
  assert.deepEqual(upward, []);
});

test('no import cycles, type-only imports included', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]): void => {
    const seen = state.get(file);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(SRC, f)).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const { target } of graph.get(file) ?? []) if (graph.has(target)) visit(target, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of files) visit(file, []);
  assert.deepEqual(cycles, []);
});
