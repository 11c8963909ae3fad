// The checkout (or installed package) folder, found from this file whether it runs from
// src/ under ts-jest or from dist/ after the build.
import { existsSync } from 'node:fs';
import path from 'node:path';

function findRoot(start: string): string {
  for (let dir = start; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no package.json above ${start}`);
}

export const projectRoot = findRoot(__dirname);
