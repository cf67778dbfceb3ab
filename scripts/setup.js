'use strict';
// What the native test suite needs on this machine, and how `npm test` gets it: on Debian/Ubuntu it installs
// the missing packages with apt-get when it may (root, or sudo without a password); otherwise it prints the one
// command to run and stops. Detection is real (commands on PATH, dpkg-query); two environment variables let a
// test rehearse the missing case without touching the machine:
//   PAGEDLM_SETUP_PRETEND_MISSING=pkg,pkg   report these Debian packages as missing
//   PAGEDLM_SETUP_DRY_RUN=1                  print the install command instead of running it
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');

function hasCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function isDebianLike() {
  if (!hasCommand('dpkg-query') || !hasCommand('apt-get')) return false;
  try {
    const release = fs.readFileSync('/etc/os-release', 'utf8');
    return /^ID(_LIKE)?=.*\b(debian|ubuntu)\b/m.test(release);
  } catch {
    return false;
  }
}

function dpkgInstalled(pkg) {
  const out = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return out.status === 0 && out.stdout.includes('install ok installed');
}

/**
 * The native suite's needs. `command` ones are checked on PATH anywhere; `library` ones only through dpkg
 * (elsewhere CMake's find_package reports them, naming the package).
 */
function nativeNeeds(env = process.env) {
  const ninja = /ninja/i.test(env.CMAKE_GENERATOR ?? '');
  return [
    { what: 'CMake', pkg: 'cmake', commands: ['cmake'] },
    { what: 'a C++ compiler', pkg: 'g++', commands: ['c++', 'g++', 'clang++'] },
    ninja ? { what: 'Ninja', pkg: 'ninja-build', commands: ['ninja'] } : { what: 'make', pkg: 'make', commands: ['make'] },
    { what: 'GoogleTest', pkg: 'libgtest-dev', library: true },
    { what: 'GoogleMock (GoogleTest\'s CMake package refers to it)', pkg: 'libgmock-dev', library: true },
    { what: 'nlohmann/json', pkg: 'nlohmann-json3-dev', library: true },
  ];
}

/** The needs not met here; `pretend` names Debian packages to report as missing whatever is installed. */
function findMissing({ needs = nativeNeeds(), debian = isDebianLike(), pretend = [] } = {}) {
  return needs.filter((need) => {
    if (pretend.includes(need.pkg)) return true;
    if (need.commands) return !need.commands.some(hasCommand);
    return debian ? !dpkgInstalled(need.pkg) : false;
  });
}

/**
 * What to do about missing packages: 'none', 'install' (run `command`) or 'ask' (print `command` for the user
 * and stop). Pure, so that each case can be tested on any machine.
 */
function installPlan({ missing, debian, root, passwordlessSudo }) {
  if (missing.length === 0) return { action: 'none' };
  const pkgs = missing.map((need) => need.pkg);
  if (!debian) {
    const list = missing.map((need) => `${need.what} (Debian/Ubuntu package ${need.pkg})`).join(', ');
    return { action: 'ask', command: null, message: `install ${list} with this system's package manager, then run npm test again` };
  }
  const apt = ['apt-get', 'install', '-y', '--no-install-recommends', ...pkgs];
  if (root) return { action: 'install', command: [['apt-get', 'update', '-q'], apt] };
  if (passwordlessSudo) return { action: 'install', command: [['sudo', 'apt-get', 'update', '-q'], ['sudo', ...apt]] };
  return { action: 'ask', command: ['sudo', ...apt], message: `run: sudo ${apt.join(' ')}` };
}

function canSudoWithoutPassword() {
  return hasCommand('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure the native suite can build: installs what is missing when it may. Returns true when the suite can
 * go ahead; false after printing what the user must run.
 */
function ensureNativePrerequisites({ env = process.env, log = console.log } = {}) {
  const pretend = (env.PAGEDLM_SETUP_PRETEND_MISSING ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const debian = isDebianLike();
  const missing = findMissing({ needs: nativeNeeds(env), debian, pretend });
  const plan = installPlan({
    missing,
    debian,
    root: typeof process.getuid === 'function' && process.getuid() === 0,
    passwordlessSudo: missing.length > 0 && canSudoWithoutPassword(),
  });
  if (plan.action === 'none') return true;
  log(`\nThe native tests need: ${missing.map((need) => `${need.what} (${need.pkg})`).join(', ')}.`);
  if (plan.action === 'ask') {
    log(`\n  ${plan.message}\n`);
    return false;
  }
  for (const command of plan.command) {
    if (env.PAGEDLM_SETUP_DRY_RUN) {
      log(`would run: ${command.join(' ')}`);
      continue;
    }
    log(`> ${command.join(' ')}`);
    execFileSync(command[0], command.slice(1), { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  return true;
}

module.exports = { nativeNeeds, findMissing, installPlan, ensureNativePrerequisites, isDebianLike, dpkgInstalled };
