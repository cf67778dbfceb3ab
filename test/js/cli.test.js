'use strict';
// The command line's default model: the repository's test model when it sits beside the checkout, and
// otherwise one line that says what to pass.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CLI = path.join(__dirname, '..', '..', 'bin', 'pagedlm.js');
const DEFAULT_MODEL = path.join(__dirname, '..', '..', '..', 'shared', 'models', 'aidreams260K.gguf');
const describeWithDefault = fs.existsSync(DEFAULT_MODEL)
  ? describe
  : (title) => describe.skip(`${title} (skipped: ${DEFAULT_MODEL} not found)`, () => test('skipped', () => {}));

function runCli(cli, args) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60000 });
}

describe('pagedlm without --model, away from the test models', () => {
  let dir;
  let cli;
  beforeAll(() => {
    // A copy of the CLI and its lib/ in a folder with no ../shared/models beside it, as in an installed package.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-cli-'));
    fs.mkdirSync(path.join(dir, 'checkout', 'bin'), { recursive: true });
    cli = path.join(dir, 'checkout', 'bin', 'pagedlm.js');
    fs.copyFileSync(CLI, cli);
    fs.cpSync(path.join(path.dirname(CLI), '..', 'lib'), path.join(dir, 'checkout', 'lib'), { recursive: true });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['generate', ['generate', '--prompt', 'Hello']],
    ['info', ['info']],
    ['chat', ['chat']],
    ['inspect', ['inspect']],
    ['serve', ['serve', '--port', '0']],
  ])('%s says in one line what to pass, and fails', (_, args) => {
    const { status, stdout, stderr } = runCli(cli, args);
    expect(status).not.toBe(0);
    expect(stdout).toBe('');
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^pagedlm: no model: pass --model PATH\/TO\/MODEL\.gguf /);
    expect(lines[0]).toContain(path.join(dir, 'shared', 'models', 'aidreams260K.gguf'));
  });
});

describeWithDefault('pagedlm without --model, in the repository', () => {
  test('generate falls back to the test model', () => {
    const { status, stdout, stderr } = runCli(CLI, ['generate', '--prompt', 'A neural network', '--temperature', '0', '--max-tokens', '4']);
    expect(stderr).toMatch(/4 generated tokens/);
    expect(status).toBe(0);
    expect(stdout.startsWith('A neural network')).toBe(true);
  });
});
