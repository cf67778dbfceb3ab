'use strict';
// Aborts at any moment, close() with requests in flight, an event loop that stays responsive, and model
// files that are not what they claim.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Engine } = require('../..');
const { describeWithModels } = require('../support/models');

const LONG = { temperature: 0, maxTokens: 400, ignoreEos: true };

describeWithModels('abort', ['stories260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 2 });
  });
  afterAll(() => engine.close());

  const allBlocksFree = async () => {
    await new Promise((r) => setTimeout(r, 20));
    expect(engine.stats().blocksInUse).toBe(0);
  };

  test('a signal aborted before the call resolves at once with finishReason abort', async () => {
    const controller = new AbortController();
    controller.abort();
    const result = await engine.generate([1], { ...LONG, signal: controller.signal });
    expect(result).toMatchObject({ finishReason: 'abort', tokens: [], text: '' });
  });

  test('abort right after the call', async () => {
    const controller = new AbortController();
    const pending = engine.generate([1], { ...LONG, signal: controller.signal });
    controller.abort();
    const result = await pending;
    expect(result.finishReason).toBe('abort');
    expect(result.tokens.length).toBeLessThan(400);
    await allBlocksFree();
  });

  test('abort from inside onToken after N tokens keeps exactly the tokens streamed so far', async () => {
    for (const n of [1, 2, 17, 64]) {
      const controller = new AbortController();
      const seen = [];
      const result = await engine.generate([1], {
        ...LONG,
        signal: controller.signal,
        onToken: (t) => {
          seen.push(t.id);
          if (seen.length === n) controller.abort();
        },
      });
      expect(result.finishReason).toBe('abort');
      expect(result.tokens.slice(0, n)).toEqual(seen.slice(0, n));
      expect(result.tokens).toEqual(seen);
    }
    await allBlocksFree();
  });

  test('abort from a timer while other requests keep running', async () => {
    const controller = new AbortController();
    const aborted = engine.generate([1], { ...LONG, signal: controller.signal });
    const other = engine.generate([1], { temperature: 0, maxTokens: 50, ignoreEos: true });
    setTimeout(() => controller.abort(), 5);
    const [a, b] = await Promise.all([aborted, other]);
    expect(a.finishReason).toBe('abort');
    expect(b.finishReason).toBe('length');
    expect(b.tokens).toHaveLength(50);
    await allBlocksFree();
  });

  test('aborting after completion changes nothing', async () => {
    const controller = new AbortController();
    const result = await engine.generate([1], { temperature: 0, maxTokens: 5, signal: controller.signal });
    controller.abort();
    expect(result.finishReason).toBe('length');
  });
});

describeWithModels('close', ['stories260K.gguf'], (modelPath) => {
  test('close() rejects requests in flight and waiting with ERR_CLOSED, then refuses new ones', async () => {
    const engine = await Engine.load(modelPath, { kvCache: { blocks: 40 } });
    const inFlight = [1, 2, 3].map(() => engine.generate([1], LONG));
    const outcomes = Promise.allSettled(inFlight);
    await new Promise((r) => setTimeout(r, 10));
    await engine.close();
    for (const o of await outcomes) {
      expect(o.status).toBe('rejected');
      expect(o.reason.code).toBe('ERR_CLOSED');
    }
    await expect(engine.generate([1])).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(() => engine.info()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }));
    await engine.close(); // idempotent
    expect(engine.closed).toBe(true);
  });

  test('close() right after load, with nothing running', async () => {
    const engine = await Engine.load(modelPath);
    await engine.close();
  });
});

describeWithModels('process lifetime', ['stories260K.gguf'], (modelPath) => {
  const runNode = (script) =>
    execFileSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..'), timeout: 30000, encoding: 'utf8', env: { ...process.env, MODEL: modelPath } });

  test('an idle engine that was never closed does not keep node alive', () => {
    expect(runNode("require('.').Engine.load(process.env.MODEL).then(() => console.log('loaded'))")).toBe('loaded\n');
  });

  test('a generation in flight keeps node alive until it finishes', () => {
    const script = `require('.').Engine.load(process.env.MODEL).then((e) => {
      e.generate([1], { maxTokens: 20, temperature: 0, ignoreEos: true }).then((r) => console.log(r.tokens.length));
    })`;
    expect(runNode(script)).toBe('20\n');
  });
});

describeWithModels('event loop', ['synth-tiny-f16.gguf'], (modelPath) => {
  test('timers keep firing during a long generation', async () => {
    const engine = await Engine.load(modelPath, { threads: 2, contextLength: 1024 });
    try {
      let ticks = 0;
      let tokens = 0;
      const timer = setInterval(() => ticks++, 5);
      const started = Date.now();
      const result = await engine.generate('Once upon a time', { temperature: 0, maxTokens: 300, ignoreEos: true, onToken: () => tokens++ });
      const elapsed = Date.now() - started;
      clearInterval(timer);
      expect(result.tokens).toHaveLength(300);
      expect(tokens).toBe(300);
      // A blocked loop would let at most a tick or two through; a free one fires about every 5 ms.
      expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 5 / 4));
      expect(ticks).toBeGreaterThan(3);
    } finally {
      await engine.close();
    }
  });
});

describeWithModels('bad model files', ['aidreams260K.gguf'], (modelPath) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-bad-'));
  const original = fs.readFileSync(modelPath);
  const write = (name, bytes) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    return file;
  };

  test('a missing file is ERR_IO naming the path', async () => {
    await expect(Engine.load(path.join(dir, 'nope.gguf'))).rejects.toMatchObject({ code: 'ERR_IO', message: expect.stringContaining('nope.gguf') });
  });

  test('a file that is not GGUF is ERR_MODEL_FORMAT: bad magic', async () => {
    await expect(Engine.load(write('text.gguf', 'hello world, not a model'))).rejects.toMatchObject({ code: 'ERR_MODEL_FORMAT', message: expect.stringContaining('bad magic') });
  });

  test('truncated copies are ERR_MODEL_FORMAT at every cut', async () => {
    for (const fraction of [0, 0.001, 0.01, 0.3, 0.5, 0.999]) {
      const file = write(`cut-${fraction}.gguf`, original.subarray(0, Math.floor(original.length * fraction)));
      await expect(Engine.load(file)).rejects.toMatchObject({ code: 'ERR_MODEL_FORMAT', message: expect.stringMatching(/truncated|outside the file/) });
    }
  });

  test('an unsupported version is named', async () => {
    const bytes = Buffer.from(original);
    bytes.writeUInt32LE(9, 4);
    await expect(Engine.load(write('v9.gguf', bytes))).rejects.toMatchObject({ code: 'ERR_MODEL_FORMAT', message: expect.stringContaining('version 9') });
  });

  test('a directory is ERR_IO', async () => {
    await expect(Engine.load(dir)).rejects.toMatchObject({ code: 'ERR_IO' });
  });
});

describeWithModels('races and files changing on disk', ['stories260K.gguf'], (modelPath) => {
  test('generate() racing close(): every promise settles, late calls get ERR_CLOSED', async () => {
    for (let round = 0; round < 10; round++) {
      const engine = await Engine.load(modelPath, { prefault: false });
      const early = Array.from({ length: 4 }, (_, i) => engine.generate([1, 300 + i], { maxTokens: 50 + round * 20, ignoreEos: true }));
      const closing = engine.close();
      const late = engine.generate([1], { maxTokens: 5 });
      const settled = await Promise.allSettled([...early, late]);
      await closing;
      for (const s of settled.slice(0, 4)) {
        if (s.status === 'rejected') expect(s.reason.code).toBe('ERR_CLOSED');
      }
      expect(settled[4].status).toBe('rejected');
      expect(settled[4].reason.code).toBe('ERR_CLOSED');
    }
  });

  test('a process that exits while a model is loading, or while generating, exits cleanly', () => {
    const run = (script) =>
      execFileSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..'), timeout: 30000, encoding: 'utf8', env: { ...process.env, MODEL: modelPath } });
    expect(run("require('.').Engine.load(process.env.MODEL); setImmediate(() => { console.log('bye'); process.exit(0); })")).toBe('bye\n');
    const generating = `require('.').Engine.load(process.env.MODEL).then((e) => {
      e.generate([1], { maxTokens: 400, ignoreEos: true });
      setTimeout(() => { console.log('bye'); process.exit(0); }, 5);
    })`;
    expect(run(generating)).toBe('bye\n');
  });

  test('a model file replaced by rename while loaded keeps serving (the engine holds the old file)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-replace-'));
    const file = path.join(dir, 'model.gguf');
    fs.copyFileSync(modelPath, file);
    const engine = await Engine.load(file);
    try {
      const before = await engine.generate([1], { temperature: 0, maxTokens: 20, ignoreEos: true });
      fs.writeFileSync(`${file}.new`, 'not a model any more');
      fs.renameSync(`${file}.new`, file);
      const after = await engine.generate([1], { temperature: 0, maxTokens: 20, ignoreEos: true });
      expect(after.tokens).toEqual(before.tokens);
    } finally {
      await engine.close();
    }
  });

  test('with mmap: false a model file truncated in place after load keeps serving', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-truncate-'));
    const file = path.join(dir, 'model.gguf');
    fs.copyFileSync(modelPath, file);
    const engine = await Engine.load(file, { mmap: false });
    try {
      expect(engine.info().modelHeapBytes).toBe(fs.statSync(file).size);
      fs.truncateSync(file, 10);
      const result = await engine.generate([1], { temperature: 0, maxTokens: 20, ignoreEos: true });
      expect(result.tokens).toHaveLength(20);
    } finally {
      await engine.close();
    }
  });
});
