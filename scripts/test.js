#!/usr/bin/env node
'use strict';
// The project's test command: builds and runs the GoogleTest suite through CTest, then Jest.
//   npm test                 native tests, then JS tests (builds the addon first if it is missing)
//   npm run test:native      native tests only
//   npm run test:asan        native tests built with AddressSanitizer + UndefinedBehaviorSanitizer
//   npm run test:tsan        the threaded native tests (engine, scheduler, thread pool) under ThreadSanitizer
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = new Set(process.argv.slice(2));
const jobs = String(Math.max(1, os.cpus().length));

function run(cmd, cmdArgs, env = {}) {
  console.log(`\n> ${cmd} ${cmdArgs.join(' ')}`);
  execFileSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
}

function nativeTests(buildDir, extraCmakeArgs, env, ctestArgs = []) {
  run('cmake', ['-S', '.', '-B', buildDir, '-DPAGEDLM_BUILD_TESTS=ON', ...extraCmakeArgs]);
  run('cmake', ['--build', buildDir, '-j', jobs]);
  run('ctest', ['--test-dir', buildDir, '--output-on-failure', '-j', jobs, ...ctestArgs], env);
}

try {
  if (args.has('--tsan')) {
    nativeTests('build-tsan', ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DPAGEDLM_SANITIZE=thread', '-DPAGEDLM_CUDA=OFF'], {
      TSAN_OPTIONS: 'halt_on_error=1:second_deadlock_stack=1',
    }, ['-L', 'threaded']);  // test/native/CMakeLists.txt labels the threaded suites
  } else if (args.has('--asan')) {
    nativeTests('build-asan', ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DPAGEDLM_SANITIZE=address,undefined', '-DPAGEDLM_CUDA=OFF'], {
      ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
      UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
    });
  } else {
    nativeTests('build-tests', ['-DCMAKE_BUILD_TYPE=Release']);
    if (!args.has('--native')) {
      if (!fs.existsSync(path.join(root, 'build', 'Release', 'pagedlm.node'))) run('npx', ['cmake-js', 'compile']);
      run('npx', ['jest', '--runInBand']);
    }
  }
} catch (error) {
  process.exitCode = error.status || 1;
}
