// Run before the tests (package.json `pretest`): the console's browser tests drive Debian's
// Chromium (/usr/bin/chromium), never a downloaded browser. When it is missing and we are root
// on a Debian-like machine (CI), install it with apt-get; otherwise say how, and go on (the
// browser tests then fail naming the missing binary).
'use strict';
const { existsSync } = require('node:fs');
const { execSync } = require('node:child_process');

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const apt = existsSync('/usr/bin/apt-get');
  if (root && apt) {
    console.log('[pretest] installing Debian chromium for the console browser tests (apt-get)…');
    execSync('apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium', {
      stdio: 'inherit',
      shell: '/bin/sh',
    });
  } else {
    console.warn(`[pretest] ${CHROMIUM} is missing: install it (sudo apt-get install chromium) or the console browser tests fail`);
  }
}
