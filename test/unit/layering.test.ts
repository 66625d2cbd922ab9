// Unit test (no network): the source tree's import graph. Data flows down
// (docs/design.md, "The shape of it"): a folder may import its own or a lower layer, never a
// higher one, and no module reaches itself through its imports.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

const SRC = resolve(__dirname, '..', '..', 'src');

/**
 * The layers, read from the README's "Layout" table (lower numbers sit
 * lower): one table, shown to readers and checked here. Top-level files are
 * named with their extension-less path ("proxy" for src/proxy.ts).
 */
function readmeLayers(): Record<string, number> {
  const readme = readFileSync(resolve(SRC, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Layout\n'));
  const layers: Record<string, number> = {};
  for (const row of section.matchAll(/^\| (\d+) \| ([^|]+) \|/gm)) {
    for (const part of (row[2] ?? '').matchAll(/`src\/([^`/]+?)(?:\/|\.ts)`/g)) layers[part[1] ?? ''] = Number(row[1]);
  }
  return layers;
}

const LAYERS: Readonly<Record<string, number>> = readmeLayers();

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** "core" for src/core/kv.ts, "proxy" for src/proxy.ts. */
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
  // A module loaded only when used (`await import('./x')`) is an arrow between layers all the same.
  for (const match of text.matchAll(/\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g)) {
    const spec = match[1];
    if (spec !== undefined) found.push({ target: `${resolve(dirname(file), spec)}.ts`, typeOnly: false });
  }
  return found;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, localImports(file)]));

test('every source folder has a layer', () => {
  const unknown = [...new Set(files.map(unitOf))].filter((unit) => LAYERS[unit] === undefined);
  assert.deepEqual(unknown, [], "add new folders and top-level files to the README's Layout table");
});

test("every part of the README's Layout table exists", () => {
  const units = new Set(files.map(unitOf));
  assert.deepEqual(Object.keys(LAYERS).filter((part) => !units.has(part)), []);
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
