#!/usr/bin/env node
'use strict';
// The installed entry point: the compiled CLI lives in dist/ (built by `npm run build`, also on `npm ci`).
require('../dist/cli/main.js')
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
      // The command is over (a shutdown is bounded): a socket left to a dead database must not keep the process alive.
      setTimeout(() => process.exit(), 200).unref();
    },
    (error) => {
      process.stderr.write(`portcullis: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
