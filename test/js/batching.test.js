'use strict';
// Continuous batching from JavaScript: many concurrent requests with random aborts match their solo runs,
// stream() iterates and aborts, the pool always returns to full, a soak leaks nothing, and an idle engine
// uses no CPU.
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Engine } = require('../..');
const { describeWithModels } = require('../support/models');

// Deterministic pseudo-random numbers for reproducible request mixes.
function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function promptOf(random) {
  const length = 1 + Math.floor(random() * 60);
  return [1, ...Array.from({ length }, () => 3 + Math.floor(random() * 500))];
}

describeWithModels('continuous batching', ['stories260K.gguf'], (modelPath) => {
  test('32 concurrent requests with random aborts each match their solo run; the pool returns to full', async () => {
    const random = prng(42);
    const specs = Array.from({ length: 32 }, (_, i) => ({
      prompt: promptOf(random),
      options: { maxTokens: 10 + Math.floor(random() * 90), ignoreEos: true, temperature: i % 2 ? 0.9 : 0, seed: i },
      abortAfter: random() < 0.3 ? 1 + Math.floor(random() * 20) : null,
    }));
    const roomy = await Engine.load(modelPath, { kvCache: { blocks: 512 } });
    const solo = [];
    for (const s of specs) solo.push((await roomy.generate(s.prompt, s.options)).tokens);
    await roomy.close();

    // 24 blocks of 16 tokens hold only a few of these at once: requests wait and get preempted.
    const engine = await Engine.load(modelPath, { kvCache: { blocks: 24 }, maxBatchTokens: 64 });
    try {
      const results = await Promise.all(
        specs.map((s) => {
          const controller = new AbortController();
          let seen = 0;
          const onToken = () => {
            if (++seen === s.abortAfter) controller.abort();
          };
          return engine.generate(s.prompt, { ...s.options, signal: controller.signal, onToken });
        }),
      );
      // The engine runs ahead of the event loop's token callbacks, so an abort sent late in a request can
      // arrive after its last token: that request then finishes whole ('length'), which is also correct.
      let aborted = 0;
      results.forEach((r, i) => {
        if (r.finishReason === 'abort') {
          aborted += 1;
          expect(specs[i].abortAfter).not.toBeNull();
          expect(r.tokens).toEqual(solo[i].slice(0, r.tokens.length));
          expect(r.tokens.length).toBeGreaterThanOrEqual(specs[i].abortAfter);
        } else {
          expect(r.finishReason).toBe('length');
          expect(r.tokens).toEqual(solo[i]);
        }
      });
      expect(aborted).toBeGreaterThan(0);
      const stats = engine.stats();
      expect(stats.preemptions).toBeGreaterThan(0);
      expect(stats.running + stats.waiting).toBe(0);
      expect(stats.blocksInUse).toBe(0);
      expect(stats.tokensPerSecond).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });

  test('stream() yields the tokens generate() returns; breaking out aborts the request', async () => {
    const engine = await Engine.load(modelPath);
    try {
      const expected = await engine.generate([1, 300, 301], { temperature: 0, maxTokens: 25, ignoreEos: true });
      const ids = [];
      const stream = engine.stream([1, 300, 301], { temperature: 0, maxTokens: 25, ignoreEos: true });
      for await (const token of stream) ids.push(token.id);
      expect(ids).toEqual(expected.tokens);
      expect((await stream.result).tokens).toEqual(expected.tokens);

      const early = engine.stream([1], { maxTokens: 400, ignoreEos: true });
      let count = 0;
      for await (const token of early) {
        expect(typeof token.text).toBe('string');
        if (++count === 5) break;
      }
      const partial = await early.result;
      expect(partial.finishReason).toBe('abort');
      expect(partial.tokens.length).toBeLessThan(400);
      expect(engine.stats().running).toBe(0);
      expect(engine.stats().blocksInUse).toBe(0);

      const bad = engine.stream(42);
      await expect(bad.next()).rejects.toThrow(TypeError);
    } finally {
      await engine.close();
    }
  });

  test('soak: 1,000 requests with random aborts leak no blocks and no memory', async () => {
    const engine = await Engine.load(modelPath, { kvCache: { blocks: 64 }, maxBatchTokens: 128 });
    try {
      const random = prng(7);
      const run = async (i) => {
        const controller = new AbortController();
        if (random() < 0.25) setTimeout(() => controller.abort(), Math.floor(random() * 5));
        const r = await engine.generate(promptOf(random), { maxTokens: 1 + Math.floor(random() * 16), temperature: 0.7, seed: i, signal: controller.signal });
        return r.finishReason;
      };
      const batch = async (from, to) => Promise.all(Array.from({ length: to - from }, (_, k) => run(from + k)));
      await batch(0, 100); // warm up allocators before the first measurement
      global.gc?.();
      const rssBefore = process.memoryUsage().rss;
      const reasons = [];
      for (let i = 100; i < 1000; i += 50) reasons.push(...(await batch(i, i + 50)));
      global.gc?.();
      const rssAfter = process.memoryUsage().rss;
      console.log(`soak: 1,000 requests (${reasons.filter((r) => r === 'abort').length} of the last 900 aborted), ` +
        `RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB, preemptions ${engine.stats().preemptions}`);
      expect(engine.stats().blocksInUse).toBe(0);
      expect(engine.stats().running + engine.stats().waiting).toBe(0);
      expect(rssAfter - rssBefore).toBeLessThan(64 * 2 ** 20);
    } finally {
      await engine.close();
    }
  });

  test('an idle engine uses about no CPU', () => {
    const script = `
      const { Engine } = require('.');
      (async () => {
        const engine = await Engine.load(process.env.MODEL, { threads: 2 });
        await engine.generate([1], { maxTokens: 20 });
        const before = process.cpuUsage();
        await new Promise((r) => setTimeout(r, 1000));
        const used = process.cpuUsage(before);
        console.log(JSON.stringify(used));
        await engine.close();
      })();`;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..'), env: { ...process.env, MODEL: modelPath }, encoding: 'utf8', timeout: 30000 });
    const { user, system } = JSON.parse(out);
    expect((user + system) / 1000).toBeLessThan(50); // ms of CPU in one idle second
  });
});
