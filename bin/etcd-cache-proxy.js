#!/usr/bin/env node
'use strict';
// Runs the compiled CLI when `npm run build` has produced it, else the
// TypeScript sources through tsx, so a fresh checkout works either way.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const compiled = join(__dirname, '..', 'dist', 'src', 'cli.js');
if (existsSync(compiled)) {
  require(compiled);
} else {
  require('tsx/cjs');
  require(join(__dirname, '..', 'src', 'cli.ts'));
}
