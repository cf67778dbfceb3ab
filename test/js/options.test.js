'use strict';
// Option objects: an unknown key is a TypeError naming it and the closest known key, at every entry point;
// and the sampling defaults are one set, used alike by generate(), the router and the CLI.
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const express = require('express');
const { Engine, DEFAULT_SAMPLING } = require('../..');
const { createRouter } = require('../../express');
const fs = require('node:fs');
const options = require('../../lib/options');
const { ROUTER_KEYS } = require('../../lib/express');

const { closestKey, GENERATE_KEYS } = options;
const { describeWithModels } = require('../support/models');

const CLI = path.join(__dirname, '..', '..', 'bin', 'pagedlm.js');

describe('closestKey', () => {
  test.each([
    ['maxToken', 'maxTokens'],
    ['temprature', 'temperature'],
    ['max_tokens', 'maxTokens'], // OpenAI's spelling: case and separators do not count
    ['top_p', 'topP'],
    ['TopK', 'topK'],
  ])('%s -> %s', (key, expected) => {
    expect(closestKey(key, GENERATE_KEYS)).toBe(expected);
  });

  test('a key near nothing gets no guess', () => {
    expect(closestKey('banana', GENERATE_KEYS)).toBeUndefined();
    expect(closestKey('contextLenght', GENERATE_KEYS)).toBeUndefined();
  });
});

// The keys an interface of the TypeScript declarations names.
function declaredKeys(file, name) {
  const text = fs.readFileSync(path.join(__dirname, '..', '..', 'lib', file), 'utf8');
  const body = new RegExp(`export interface ${name}[^{]*\\{([\\s\\S]*?)\\n\\}`).exec(text)[1];
  return [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]).sort();
}

test('the keys accepted are the keys declared', () => {
  expect(declaredKeys('index.d.ts', 'LoadOptions')).toEqual([...options.LOAD_KEYS].sort());
  expect(declaredKeys('index.d.ts', 'KvCacheOptions')).toEqual([...options.KV_CACHE_KEYS].sort());
  expect(declaredKeys('index.d.ts', 'InspectOptions')).toEqual([...options.INSPECT_KEYS].sort());
  expect(declaredKeys('index.d.ts', 'GenerateOptions')).toEqual([...GENERATE_KEYS].sort());
  expect(declaredKeys('index.d.ts', 'EmbedOptions')).toEqual([...options.EMBED_KEYS].sort());
  expect([...declaredKeys('index.d.ts', 'ChatOptions'), ...GENERATE_KEYS, 'stream'].sort()).toEqual([...options.CHAT_KEYS].sort());
  expect(declaredKeys('express.d.ts', 'RouterOptions')).toEqual([...ROUTER_KEYS].sort());
});

describeWithModels('unknown option keys', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 128, kvCache: { blocks: 64 } });
  });
  afterAll(() => engine.close());
  const messages = [{ role: 'user', content: 'Hi' }];

  test('Engine.load and its kvCache', async () => {
    await expect(Engine.load(modelPath, { contextLenght: 64 })).rejects.toThrow(new TypeError("unknown option 'contextLenght' in Engine.load() options: did you mean 'contextLength'?"));
    await expect(Engine.load(modelPath, { kvCache: { blockSise: 16 } })).rejects.toThrow(new TypeError("unknown option 'blockSise' in kvCache: did you mean 'blockSize'?"));
  });

  test('kvCache K and V types: dtype sets both, kType / vType each, and the two ways may not disagree', async () => {
    await expect(Engine.load(modelPath, { kvCache: { kType: 'int3' } })).rejects.toThrow(new RangeError("kvCache.kType must be one of f32, f16, bf16, int8, fp8, int4, got string int3"));
    await expect(Engine.load(modelPath, { kvCache: { vType: 4 } })).rejects.toThrow(new TypeError('kvCache.vType must be a string (one of f32, f16, bf16, int8, fp8, int4), got number 4'));
    await expect(Engine.load(modelPath, { kvCache: { dtype: 'f16', kType: 'int4' } })).rejects.toThrow(
      new TypeError("kvCache.dtype 'f16' sets both K and V, but kvCache.kType is 'int4': give dtype alone, or kType and vType"),
    );
    await expect(Engine.inspect(modelPath, { kvCache: { dtype: 'int8', vType: 'fp8' } })).rejects.toThrow(TypeError);
    expect(() => Engine.estimateKvBytes({ config: { layers: 1, kvHeads: 1, headDim: 8 }, contextLength: 16, dtype: 'int8', kType: 'int4' })).toThrow(
      new TypeError("dtype 'int8' sets both K and V, but kType is 'int4': give dtype alone, or kType and vType"),
    );
    // Agreeing is allowed.
    const plan = await Engine.inspect(modelPath, { kvCache: { dtype: 'int4', kType: 'int4' } });
    expect(plan).toMatchObject({ kvDtype: 'int4', kvKType: 'int4', kvVType: 'int4' });
  });

  test('Engine.inspect', async () => {
    await expect(Engine.inspect(modelPath, { sequence: 2 })).rejects.toThrow(new TypeError("unknown option 'sequence' in Engine.inspect() options: did you mean 'sequences'?"));
    await expect(Engine.inspect(modelPath, { kvCache: { dtyp: 'f16' } })).rejects.toThrow("unknown option 'dtyp' in kvCache: did you mean 'dtype'?");
  });

  test('generate names the first unknown key', async () => {
    await expect(engine.generate('Hi', { maxToken: 3, temprature: 0 })).rejects.toThrow(new TypeError("unknown option 'maxToken' in generate() options: did you mean 'maxTokens'?"));
    await expect(engine.generate('Hi', { maxTokens: 3, temprature: 0 })).rejects.toThrow("unknown option 'temprature' in generate() options: did you mean 'temperature'?");
    await expect(engine.generate('Hi', { zzz: 1 })).rejects.toThrow(/^unknown option 'zzz' in generate\(\) options: known options: n, maxTokens, /);
  });

  test('stream', () => {
    expect(() => engine.stream('Hi', { top_k: 3 })).toThrow(new TypeError("unknown option 'top_k' in stream() options: did you mean 'topK'?"));
  });

  test('chat, streaming or not', async () => {
    await expect(engine.chat(messages, { max_tokens: 3 })).rejects.toThrow(new TypeError("unknown option 'max_tokens' in chat() options: did you mean 'maxTokens'?"));
    const stream = engine.chat(messages, { stream: true, templat: '{{ x }}' });
    await expect(stream.next()).rejects.toThrow("unknown option 'templat' in chat() options: did you mean 'template'?");
  });

  test('the other calls that take options', async () => {
    expect(() => engine.tokenize('Hi', { addBOS: false })).toThrow("unknown option 'addBOS' in tokenize() options: did you mean 'addBos'?");
    await expect(engine.cache.pin('Hi', { salt: 'a' })).rejects.toThrow(/^unknown option 'salt' in cache\.pin\(\) options/);
    expect(() => Engine.estimateKvBytes({ model: engine, sequence: 2 })).toThrow("did you mean 'sequences'?");
  });

  test('createRouter', () => {
    expect(() => createRouter(engine, { apikey: 'k' })).toThrow(new TypeError("unknown option 'apikey' in createRouter() options: did you mean 'apiKey'?"));
    expect(() => createRouter(engine, { protectMetrics: true })).toThrow(new TypeError('protectMetrics needs apiKey: the key /metrics would require'));
  });

  test('every documented key still works', async () => {
    const result = await engine.chat(messages, {
      n: 1, maxTokens: 2, temperature: 0.5, topK: 5, topP: 0.9, minP: 0.1, repetitionPenalty: 1.1, frequencyPenalty: 0.1,
      presencePenalty: 0.1, penaltyLastN: 8, seed: 1, stop: ['zz'], stopTokens: [], ignoreEos: true, cacheSalt: 's',
      addBos: true, special: true, onToken: () => {}, signal: new AbortController().signal, template: undefined, stream: false,
    });
    expect(result.tokens).toHaveLength(2);
  });
});

describeWithModels('one set of sampling defaults', ['aidreams260K.gguf'], (modelPath) => {
  const prompt = 'Once upon a time';
  const seed = 7;
  const maxTokens = 12;
  let engine;
  let expected;
  beforeAll(async () => {
    engine = await Engine.load(modelPath);
    expected = (await engine.generate(prompt, { seed, maxTokens })).text;
  });
  afterAll(() => engine.close());

  test('DEFAULT_SAMPLING is frozen and generate() applies it', async () => {
    expect(Object.isFrozen(DEFAULT_SAMPLING)).toBe(true);
    const { maxTokens: _, ...sampling } = DEFAULT_SAMPLING;
    expect((await engine.generate(prompt, { ...sampling, seed, maxTokens })).text).toBe(expected);
    // The defaults sample: the same seed with greedy decoding would be a different test of nothing.
    expect(DEFAULT_SAMPLING.temperature).toBeGreaterThan(0);
    const { tokens } = await engine.generate(prompt, { seed, ignoreEos: true });
    expect(tokens.length).toBe(Math.min(DEFAULT_SAMPLING.maxTokens, engine.info().contextLength - engine.tokenize(prompt).length));
  });

  test('the router fills omitted fields with them', async () => {
    const app = express();
    app.use(createRouter(engine));
    const server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const response = await fetch(`http://127.0.0.1:${server.address().port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt, seed, max_tokens: maxTokens, temperature: null }),
      });
      expect((await response.json()).choices[0].text).toBe(expected);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('the CLI uses them and prints them in its help', () => {
    const out = spawnSync(process.execPath, [CLI, 'generate', '--model', modelPath, '--prompt', prompt, '--seed', String(seed), '--max-tokens', String(maxTokens)], { encoding: 'utf8', timeout: 60000 });
    expect(out.status).toBe(0);
    expect(out.stdout).toBe(`${prompt}${expected}\n`);
    const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout;
    expect(help).toContain(`(default ${DEFAULT_SAMPLING.temperature})`);
    expect(help).toContain(`--top-k K               (default ${DEFAULT_SAMPLING.topK}; 0 = off)`);
  });
});
