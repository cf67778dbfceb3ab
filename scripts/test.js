#!/usr/bin/env node
'use strict';
// The project's test command: sets up what the native suite needs, builds and runs the GoogleTest suite
// through CTest, then Jest, and ends with a summary that names every suite it skipped and why.
//   npm test                 native tests, then JS tests (builds the addon first if it is missing)
//   npm run test:native      native tests only
//   npm run test:asan        native tests built with AddressSanitizer + UndefinedBehaviorSanitizer
//   npm run test:tsan        the threaded native tests (engine, scheduler, thread pool) under ThreadSanitizer
//   npm run test:pack        the packed package installed with no compiler on PATH, under two Node majors
//                            (scripts/pack-test.js; `npm test` runs it after Jest)
//   node scripts/test.js --js [PATTERN...]   JS tests only (those matching), with the skip summary
//   node scripts/test.js --setup-only   install (or name) the native suite's prerequisites, run nothing
//   npm run test:arm64       the ARM64 suite cross-compiled and run under qemu (.ci/arm64, which installs its own)
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ensureNativePrerequisites } = require('./setup');
const { packTest } = require('./pack-test');

const root = path.join(__dirname, '..');
const args = new Set(process.argv.slice(2).filter((a) => a.startsWith('--')));
const jestArgs = process.argv.slice(2).filter((a) => !a.startsWith('--')); // test file patterns, with --js
const jobs = String(Math.max(1, os.cpus().length));
const skipped = []; // { suite, why }

function run(cmd, cmdArgs, env = {}) {
  console.log(`\n> ${cmd} ${cmdArgs.join(' ')}`);
  execFileSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
}

// Runs a command with its output shown as it comes and kept, for the skip summary.
function runTee(cmd, cmdArgs, env = {}) {
  console.log(`\n> ${cmd} ${cmdArgs.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, cmdArgs, { cwd: root, stdio: ['inherit', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let output = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    child.on('error', reject);
    child.on('close', (status) => {
      if (status === 0) resolve(output);
      else reject(Object.assign(new Error(`${cmd} exited with ${status}`), { status, output }));
    });
  });
}

// CTest lists the tests that did not run as "  12 - Suite.Name [# GetParam() = ...] (Skipped)"; GoogleTest
// prints why on the line after "<file>:<line>: Skipped", which only a verbose run shows. Tests skipped for one
// reason are one entry.
function skipMessage(buildDir, name) {
  // A parameterized test's CTest name goes on after a space ("  # GetParam() = ...").
  try {
    const verbose = execFileSync('ctest', ['--test-dir', buildDir, '-R', `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}( |$)`, '-V'],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /: Skipped\n(?:\d+: )?(.+)/.exec(verbose);
    return match ? match[1].trim() : 'the test skipped itself without a message';
  } catch {
    return `see: ctest --test-dir ${buildDir} -R '^${name}$' -V`;
  }
}

function noteNativeSkips(output, buildDir) {
  const byReason = new Map();
  for (const match of output.matchAll(/^\s*\d+ - (\S+)\s.*\(Skipped\)$/gm)) {
    const why = skipMessage(buildDir, match[1]);
    byReason.set(why, [...(byReason.get(why) ?? []), match[1]]);
  }
  for (const [why, names] of byReason) {
    const shown = names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ');
    skipped.push({ suite: `native (${names.length} test${names.length > 1 ? 's' : ''}): ${shown}`, why });
  }
}

async function nativeTests(buildDir, extraCmakeArgs, env, ctestArgs = []) {
  run('cmake', ['-S', '.', '-B', buildDir, '-DPAGEDLM_BUILD_TESTS=ON', ...extraCmakeArgs]);
  run('cmake', ['--build', buildDir, '-j', jobs]);
  try {
    noteNativeSkips(await runTee('ctest', ['--test-dir', buildDir, '--output-on-failure', '-j', jobs, ...ctestArgs], env), buildDir);
  } catch (error) {
    if (error.output) noteNativeSkips(error.output, buildDir);
    throw error;
  }
}

// Jest suites skip with the reason in their title ("... (skipped: no Chromium at ...)").
function noteJsSkips(reportFile) {
  if (!fs.existsSync(reportFile)) return;
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8'));
  const seen = new Set();
  for (const file of report.testResults) {
    for (const test of file.assertionResults) {
      if (test.status !== 'pending' && test.status !== 'skipped') continue;
      const titled = [...test.ancestorTitles, test.title].find((t) => /\(skipped: /.test(t));
      const suite = titled ? titled.replace(/ \(skipped: .*\)$/s, '') : [...test.ancestorTitles, test.title].join(' > ');
      const why = titled ? /\(skipped: (.*)\)$/s.exec(titled)[1] : 'marked skip in the test file';
      const name = `js ${path.relative(root, file.name)}: ${suite}`;
      if (seen.has(name)) continue;
      seen.add(name);
      skipped.push({ suite: name, why });
    }
  }
}

async function jsTests() {
  if (!fs.existsSync(path.join(root, 'build', 'Release', 'pagedlm.node'))) run('npx', ['cmake-js', 'compile']);
  const reportFile = path.join(os.tmpdir(), `pagedlm-jest-${process.pid}.json`);
  try {
    run('npx', ['jest', '--runInBand', '--json', `--outputFile=${reportFile}`, ...jestArgs]);
  } finally {
    noteJsSkips(reportFile);
    fs.rmSync(reportFile, { force: true });
  }
}

// npm pack's prepack script builds the addon when build/Release lacks it, and reuses it when it is up to date.
function packTests() {
  console.log('\n> node scripts/pack-test.js');
  try {
    skipped.push(...packTest());
  } catch (error) {
    console.error(`\npack test failed: ${error.message}`);
    throw error;
  }
}

function printSkipSummary() {
  const bar = '!'.repeat(78);
  if (skipped.length === 0) {
    console.log('\nnpm test: no suite was skipped.');
    return;
  }
  console.log(`\n${bar}\n!! SKIPPED: ${skipped.length} suite(s) or test(s) did NOT run on this machine:`);
  for (const { suite, why } of skipped) console.log(`!!   ${suite}\n!!       why: ${why}`);
  console.log(bar);
}

async function main() {
  if (args.has('--arm64')) {
    try {
      run('bash', [path.join('.ci', 'arm64')]);
    } catch (error) {
      process.exitCode = error.status || 1;
    }
    return;
  }
  if (!args.has('--js') && !args.has('--pack') && !ensureNativePrerequisites()) {
    process.exitCode = 2;
    return;
  }
  if (args.has('--setup-only')) return;
  try {
    if (args.has('--js')) {
      await jsTests();
    } else if (args.has('--pack')) {
      packTests();
    } else if (args.has('--tsan')) {
      await nativeTests('build-tsan', ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DPAGEDLM_SANITIZE=thread', '-DPAGEDLM_CUDA=OFF'], {
        TSAN_OPTIONS: 'halt_on_error=1:second_deadlock_stack=1',
      }, ['-L', 'threaded']);  // test/native/CMakeLists.txt labels the threaded suites
    } else if (args.has('--asan')) {
      // The engine tests on the emulated GPU run each CUDA thread as a fiber through whole generations: too slow
      // under ASan for CI's budget. They run in `npm test`; the kernels and the backend they drive stay here.
      await nativeTests('build-asan', ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DPAGEDLM_SANITIZE=address,undefined', '-DPAGEDLM_CUDA=OFF'], {
        ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
        UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
      }, ['-E', '^Emulated\\.CudaEngine\\.']);
    } else {
      await nativeTests('build-tests', ['-DCMAKE_BUILD_TYPE=Release']);
      if (!args.has('--native')) {
        await jsTests();
        packTests();
      }
    }
  } catch (error) {
    process.exitCode = error.status || 1;
  } finally {
    printSkipSummary();
  }
}

main();
