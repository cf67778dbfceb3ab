'use strict';
// The command line refuses a bad numeric or choice flag before any work, with one line naming the flag and
// what it takes; and `pagedlm inspect` prints the memory planner's answer (Engine.inspect), or it raw with --json.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { formatBytes, count } = require('../../lib/cli/common');
const { writeLlamaModel } = require('../support/gguf-writer');

const CLI = path.join(__dirname, '..', '..', 'bin', 'pagedlm.js');
const cli = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60000 });

describe('numeric and choice flags', () => {
  test.each([
    [['serve', '--port', 'abc'], "--port must be an integer from 0 to 65535, got 'abc'"],
    [['serve', '--port', '65536'], "--port must be an integer from 0 to 65535, got '65536'"],
    [['generate', '--prompt', 'x', '--max-tokens', '-3'], "--max-tokens must be an integer of at least 1, got '-3'"],
    [['generate', '--prompt', 'x', '-n', '0'], "--max-tokens must be an integer of at least 1, got '0'"],
    [['generate', '--prompt', 'x', '--temperature', 'x'], "--temperature must be a number from 0 to 100, got 'x'"],
    [['generate', '--prompt', 'x', '--temperature', ''], "--temperature must be a number from 0 to 100, got ''"],
    [['chat', '--threads', '1.5'], "--threads must be an integer from 1 to 1024, got '1.5'"],
    [['chat', '--top-p', '0'], "--top-p must be a number above 0 and at most 1, got '0'"],
    [['chat', '--top-k', '0x10'], "--top-k must be an integer of at least 0, got '0x10'"],
    [['chat', '--seed=-1'], "--seed must be an integer of at least 0, got '-1'"],
    [['chat', '--context', '2k'], "--context must be an integer from 1 to 16777216, got '2k'"],
    [['inspect', '--sequences', '0'], "--sequences must be an integer from 1 to 1048576, got '0'"],
    [['inspect', '--memory', 'lots'], "--memory must be a size such as 8GiB, 512MB or 1e9 bytes, got 'lots'"],
    [['inspect', '--kv-dtype', 'f8'], "--kv-dtype must be one of f32, f16, bf16, int8, fp8, int4, got 'f8'"],
    [['inspect', '--kv-v-type', 'int3'], "--kv-v-type must be one of f32, f16, bf16, int8, fp8, int4, got 'int3'"],
    [['inspect', '--device', 'tpu'], "--device must be one of auto, cpu, cuda, got 'tpu'"],
    [['serve', '--context-overflow', 'drop'], "--context-overflow must be one of truncate-oldest, error, got 'drop'"],
    [['chat', '--kv-offload-disk', 'big'], "--kv-offload-disk must be a size such as 8GiB, 512MB or 1e9 bytes, got 'big'"],
  ])('%j is refused', (args, message) => {
    const { status, stdout, stderr } = cli(...args);
    expect(stderr).toBe(`pagedlm: ${message}\n`);
    expect(stdout).toBe('');
    expect(status).toBe(1);
  });

  test('a negative value reaches the range check of a flag that takes one', () => {
    // --frequency-penalty accepts -100..100: the bad flag is the only complaint.
    const { stderr, status } = cli('generate', '--frequency-penalty', '-0.5', '--threads', 'many');
    expect(stderr).toBe("pagedlm: --threads must be an integer from 1 to 1024, got 'many'\n");
    expect(status).toBe(1);
  });

  test('--kv-offload-disk without --kv-offload-path is the library\'s error', () => {
    const { stderr, status } = cli('generate', '--prompt', 'x', '--kv-offload-disk', '1MiB');
    expect(stderr).toMatch(/^pagedlm: kvCache.offload.disk needs kvCache.offload.path/);
    expect(status).toBe(1);
  });

  test('the offload flags give the engine its disk tier', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-cli-offload-'));
    const tier = path.join(folder, 'tier');
    try {
      const { status, stderr } = cli('generate', '--prompt', 'Once', '-n', '2', '--kv-offload-memory', '1MiB', '--kv-offload-disk', '8MiB',
        '--kv-offload-path', tier);
      expect(stderr).not.toMatch(/pagedlm: /);
      expect(status).toBe(0);
      expect(fs.readdirSync(tier)).toHaveLength(1);  // the folder of this model and KV layout
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });

  test('an unknown command names itself and prints the usage', () => {
    const { stderr, status } = cli('chta');
    expect(stderr).toMatch(/^pagedlm: unknown command 'chta'\nusage:/);
    expect(status).toBe(1);
  });
});

describe('pagedlm inspect', () => {
  let dir;
  let model;
  const MEMORY = 64 * 2 ** 20;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-cli-inspect-'));
    model = writeLlamaModel(path.join(dir, 'planned.gguf'), { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 320, type: 'F16', context: 131072, name: 'planned' });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('--json prints what Engine.inspect answers for the same options', async () => {
    const { stdout, status } = cli('inspect', '--model', model, '--memory', '64MiB', '--sequences', '2', '--kv-dtype', 'int8', '--device', 'cpu', '--json');
    expect(status).toBe(0);
    const plan = await Engine.inspect(model, { memory: MEMORY, sequences: 2, kvCache: { dtype: 'int8' }, device: 'cpu' });
    expect(JSON.parse(stdout)).toEqual(plan);
  });

  test('--kv-k-type and --kv-v-type plan K and V apart', async () => {
    const { stdout, status } = cli('inspect', '--model', model, '--memory', '64MiB', '--kv-k-type', 'int8', '--kv-v-type', 'int4', '--device', 'cpu', '--json');
    expect(status).toBe(0);
    const plan = await Engine.inspect(model, { memory: MEMORY, kvCache: { kType: 'int8', vType: 'int4' }, device: 'cpu' });
    expect(JSON.parse(stdout)).toEqual(plan);
    expect(plan).toMatchObject({ kvDtype: null, kvKType: 'int8', kvVType: 'int4' });
  });

  test('the readable plan gives the weights, KV bytes per token of every dtype, memory, budget and the context that fits', async () => {
    const { stdout, status } = cli('inspect', '--model', model, '--memory', '64MiB', '--sequences', '2');
    expect(status).toBe(0);
    const plan = await Engine.inspect(model, { memory: MEMORY, sequences: 2 });
    const line = (label) => stdout.split('\n').find((l) => l.startsWith(`${label} `))?.slice(label.length).trim();
    expect(line('model')).toBe('planned (llama), 1 file');
    expect(line('weights')).toBe(`${formatBytes(plan.weightBytes)} (F16 ${formatBytes(plan.weightBytesByType.F16)}, F32 ${formatBytes(plan.weightBytesByType.F32)})`);
    expect(line('trained context')).toBe('131,072 tokens');
    const kv = plan.kvBytesPerToken;
    expect(line('KV per token')).toBe(`f32 ${formatBytes(kv.f32)}, f16 ${formatBytes(kv.f16)} (planned), bf16 ${formatBytes(kv.bf16)}, int8 ${formatBytes(kv.int8)}, fp8 ${formatBytes(kv.fp8)}, int4 ${formatBytes(kv.int4)}`);
    expect(line('device')).toBe('cpu');
    expect(line('memory')).toBe('64.0 MiB as given by --memory');
    expect(line('KV budget')).toBe(`${formatBytes(plan.kvBudgetBytes)} (half of what the weights leave)`);
    expect(line('fits')).toBe(`${count(plan.maxContextLength)} tokens of f16 KV for each of 2 sequences`);
    expect(line('load picks')).toBe(`a context of ${count(plan.contextLength)} tokens, limited by the KV budget`);
    expect(plan.contextLimit).toBe('memory');
  });

  test('a model that cannot be read is one error line and status 1', () => {
    const { stderr, status } = cli('inspect', '--model', path.join(dir, 'missing.gguf'));
    expect(stderr).toMatch(/^pagedlm: .*missing\.gguf.*\(ERR_IO\)\n$/);
    expect(status).toBe(1);
  });
});
