'use strict';
// npm test's own set-up (scripts/setup.js): what it decides for each kind of machine, and that a missing
// package on this machine is reported with the command that installs it. Nothing here installs anything.
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { nativeNeeds, findMissing, installPlan, isDebianLike, dpkgInstalled } = require('../../scripts/setup');

const json = nativeNeeds().find((need) => need.pkg === 'nlohmann-json3-dev');
const gtest = nativeNeeds().find((need) => need.pkg === 'libgtest-dev');
const apt = ['apt-get', 'install', '-y', '--no-install-recommends', 'nlohmann-json3-dev', 'libgtest-dev'];

describe('installPlan', () => {
  test('nothing missing: nothing to do', () => {
    expect(installPlan({ missing: [], debian: true, root: false, passwordlessSudo: false })).toEqual({ action: 'none' });
  });
  test('root on Debian installs with apt-get', () => {
    expect(installPlan({ missing: [json, gtest], debian: true, root: true, passwordlessSudo: false }))
      .toEqual({ action: 'install', command: [['apt-get', 'update', '-q'], apt] });
  });
  test('a user with password-less sudo installs with sudo apt-get', () => {
    expect(installPlan({ missing: [json, gtest], debian: true, root: false, passwordlessSudo: true }))
      .toEqual({ action: 'install', command: [['sudo', 'apt-get', 'update', '-q'], ['sudo', ...apt]] });
  });
  test('a user without it is given the one command to run', () => {
    const plan = installPlan({ missing: [json, gtest], debian: true, root: false, passwordlessSudo: false });
    expect(plan.action).toBe('ask');
    expect(plan.message).toBe(`run: sudo ${apt.join(' ')}`);
  });
  test('another system is told what to install', () => {
    const plan = installPlan({ missing: [json], debian: false, root: true, passwordlessSudo: true });
    expect(plan.action).toBe('ask');
    expect(plan.message).toMatch(/nlohmann\/json \(Debian\/Ubuntu package nlohmann-json3-dev\)/);
  });
});

describe('detection', () => {
  test('a command that exists is found; one that does not is missing', () => {
    const needs = [
      { what: 'node', pkg: 'nodejs', commands: [path.basename(process.execPath)] },
      { what: 'nothing', pkg: 'no-such-package', commands: ['pagedlm-no-such-command'] },
    ];
    expect(findMissing({ needs, debian: false }).map((n) => n.pkg)).toEqual(['no-such-package']);
  });
  test('a pretended package is missing whatever is installed', () => {
    expect(findMissing({ needs: [json], debian: false, pretend: ['nlohmann-json3-dev'] })).toEqual([json]);
  });
  (isDebianLike() ? test : test.skip)('dpkg-query tells installed from absent packages (Debian only)', () => {
    expect(dpkgInstalled('dpkg')).toBe(true);
    expect(dpkgInstalled('pagedlm-no-such-package')).toBe(false);
  });
});

test('npm test names a missing package and how to get it, before building anything', () => {
  const out = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'scripts', 'test.js'), '--setup-only'], {
    encoding: 'utf8',
    env: { ...process.env, PAGEDLM_SETUP_PRETEND_MISSING: 'nlohmann-json3-dev', PAGEDLM_SETUP_DRY_RUN: '1' },
  });
  expect(out.stdout).toMatch(/The native tests need: nlohmann\/json \(nlohmann-json3-dev\)/);
  if (isDebianLike()) {
    // Root or password-less sudo: it would install; anyone else: it names the command and fails.
    expect(out.stdout).toMatch(/(would run: (sudo )?|run: sudo )apt-get install -y --no-install-recommends nlohmann-json3-dev/);
    expect(out.status).toBe(/would run/.test(out.stdout) ? 0 : 2);
  } else {
    expect(out.status).toBe(2);
  }
});
