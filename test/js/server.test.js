'use strict';
// The OpenAI-compatible router on a real loopback server, driven by the official `openai` client and by
// raw HTTP: chat and completions, streaming and not, errors in OpenAI's shape, client disconnects, load.
const http = require('node:http');
const { createHook } = require('node:async_hooks');
const OpenAI = require('openai');
const autocannon = require('autocannon');
const { Engine } = require('../..');
const { startRouter, stopRouter } = require('../support/router');
const { describeWithModels } = require('../support/models');

function waitFor(predicate, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (predicate()) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error('condition not met in time'));
      setTimeout(check, 10);
    };
    check();
  });
}

// Timers created from now on that are still armed and would keep the process alive, by where they were created.
// Jest's own reporter arms timers of its own at any moment, so those are left out rather than counted.
function watchTimers() {
  const created = [];
  const hook = createHook({
    init(id, type, trigger, timer) {
      if (type === 'Timeout') created.push({ timer, where: new Error().stack });
    },
  }).enable();
  return {
    stillArmed() {
      hook.disable();
      return created
        .filter(({ timer, where }) => !timer._destroyed && timer.hasRef() && !where.includes('node_modules/@jest/'))
        .map(({ where }) => where);
    },
  };
}

describeWithModels('OpenAI-compatible server', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  let server;
  let url;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 512, kvCache: { blocks: 256 } });
    ({ server, url } = await startRouter(engine, { model: 'tiny', maxTokens: 256 }));
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  test('GET /v1/models lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);
  });

  test('chat completion, then the same request streamed, give the same text', async () => {
    const request = { model: 'tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }], max_tokens: 12, temperature: 0 };
    const full = await client.chat.completions.create(request);
    expect(full.object).toBe('chat.completion');
    expect(full.choices[0].message.role).toBe('assistant');
    expect(full.choices[0].finish_reason).toBe('length');
    expect(full.usage.completion_tokens).toBe(12);
    expect(full.usage.total_tokens).toBe(full.usage.prompt_tokens + 12);

    const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      text += choice.delta?.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
    expect(text).toBe(full.choices[0].message.content);
    expect(finish).toBe('length');
    expect(usage).toEqual(full.usage);
  });

  test('completions: stop, seed, n', async () => {
    const base = { model: 'tiny', prompt: 'Once upon a time', max_tokens: 10, temperature: 0.9, seed: 3 };
    const a = await client.completions.create({ ...base, n: 2 });
    expect(a.object).toBe('text_completion');
    expect(a.choices.map((c) => c.index)).toEqual([0, 1]);
    const b = await client.completions.create({ ...base, n: 2 });
    expect(b.choices.map((c) => c.text)).toEqual(a.choices.map((c) => c.text)); // same seed, same text
    const firstWord = a.choices[0].text.trim().split(/\s+/)[1];
    if (firstWord) {
      const stopped = await client.completions.create({ ...base, n: 1, stop: [firstWord] });
      expect(stopped.choices[0].finish_reason).toBe('stop');
      expect(stopped.choices[0].text).not.toContain(firstWord);
    }
    const streamed = await client.completions.create({ ...base, n: 1, stream: true });
    let text = '';
    for await (const chunk of streamed) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(a.choices[0].text);
  });

  test('errors come in OpenAI shape with proper status codes', async () => {
    await expect(client.chat.completions.create({ model: 'tiny', messages: 'hi' })).rejects.toMatchObject({ status: 400 });
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 100000 })).rejects.toMatchObject({ status: 400 });
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', temperature: -2 })).rejects.toMatchObject({ status: 400 });
    await expect(client.chat.completions.create({ model: 'tiny', messages: [{ role: 'wizard', content: 'x' }] })).rejects.toMatchObject({ status: 400 });
    const long = 'word '.repeat(2000);
    await expect(client.completions.create({ model: 'tiny', prompt: long, max_tokens: 5 })).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded' });
    const raw = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    expect(raw.status).toBe(400);
    expect((await raw.json()).error.type).toBe('invalid_request_error');
    const missing = await fetch(`${url}/v1/anything`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error).toMatchObject({ code: 'not_found', message: 'no route for GET /v1/anything' });
  });

  const rejection = (param, message) => expect.objectContaining({ status: 400, param, ...(message ? { message: expect.stringMatching(message) } : {}) });

  test('every accepted field is honoured together, on both endpoints', async () => {
    const fields = {
      model: 'tiny', max_tokens: 6, n: 2, temperature: 0.7, top_p: 0.9, stop: ['\n\n'], seed: 11, user: 'u-1',
      frequency_penalty: 0.1, presence_penalty: 0.1, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, ignore_eos: true,
      stream: false, stream_options: null, logprobs: false, tools: null,
    };
    const chat = await client.chat.completions.create({ ...fields, messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 5 });
    expect(chat.choices).toHaveLength(2);
    expect(chat.usage.completion_tokens).toBe(10); // max_completion_tokens over max_tokens, for each of n
    const completion = await client.completions.create({ ...fields, prompt: 'Once upon a time', tools: undefined, logprobs: null });
    expect(completion.choices).toHaveLength(2);
    expect(completion.usage.completion_tokens).toBe(12);
    const again = await client.completions.create({ ...fields, prompt: 'Once upon a time', tools: undefined, logprobs: null });
    expect(again.choices.map((c) => c.text)).toEqual(completion.choices.map((c) => c.text)); // seed
  });

  test('a field the router does not implement is a 400 naming it, never ignored', async () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    await expect(client.chat.completions.create({ model: 'tiny', messages, temprature: 0 })).rejects.toEqual(rejection('temprature', /unsupported field 'temprature' in \/v1\/chat\/completions: did you mean 'temperature'\?/));
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', maxTokens: 3 })).rejects.toEqual(rejection('maxTokens', /did you mean 'max_tokens'/));
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', messages })).rejects.toEqual(rejection('messages'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, prompt: 'x' })).rejects.toEqual(rejection('prompt'));
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', echo: true })).rejects.toEqual(rejection('echo'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, logit_bias: { 5: 10 } })).rejects.toEqual(rejection('logit_bias'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, stream: true, stream_options: { include_usage: true, extra: 1 } })).rejects.toEqual(rejection('stream_options.extra'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, functions: [{ name: 'weather' }] })).rejects.toEqual(rejection('functions', /use tools and tool_choice/));
    await expect(client.chat.completions.create({ model: 'tiny', messages, response_format: { type: 'xml' } })).rejects.toEqual(rejection('response_format.type'));
    const badSchema = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { age: { type: 'int' } } } } };
    await expect(client.chat.completions.create({ model: 'tiny', messages, response_format: badSchema })).rejects.toEqual(rejection('response_format.json_schema.schema', /\/properties\/age\/type/));
    // A field of the right name and the wrong type names it too.
    await expect(client.chat.completions.create({ model: 'tiny', messages, user: 5 })).rejects.toEqual(rejection('user'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, n: 1.5 })).rejects.toEqual(rejection('n'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, seed: 'x' })).rejects.toEqual(rejection('seed'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, stream: 'yes' })).rejects.toEqual(rejection('stream'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, stream: true, stream_options: { include_usage: 1 } })).rejects.toEqual(rejection('stream_options.include_usage'));
  });

  test('developer role, text content parts, tool calls and tool results', async () => {
    const request = { model: 'tiny', max_tokens: 6, temperature: 0 };
    const system = await client.chat.completions.create({ ...request, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] });
    const developer = await client.chat.completions.create({
      ...request,
      messages: [{ role: 'developer', content: [{ type: 'text', text: 'Be ' }, { type: 'text', text: 'brief.' }] }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }],
    });
    expect(developer.choices[0].message.content).toBe(system.choices[0].message.content);
    expect(developer.usage).toEqual(system.usage);
    const image = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }];
    await expect(client.chat.completions.create({ ...request, messages: image })).rejects.toEqual(rejection('messages[0].content[0].type', /image_url/));
    const withTools = await client.chat.completions.create({
      ...request,
      messages: [
        { role: 'user', content: 'Weather in Oslo?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'rain' },
      ],
    });
    expect(withTools.choices[0].finish_reason).toBe('length');
  });

  test('completions: prompt as token ids, or a batch of one prompt', async () => {
    const request = { model: 'tiny', max_tokens: 8, temperature: 0 };
    const text = await client.completions.create({ ...request, prompt: 'Once upon a time' });
    const ids = engine.tokenize('Once upon a time'); // with BOS: token ids are sent as the whole prompt
    const fromIds = await client.completions.create({ ...request, prompt: ids });
    expect(fromIds.choices[0].text).toBe(text.choices[0].text);
    expect(fromIds.usage.prompt_tokens).toBe(ids.length);
    expect((await client.completions.create({ ...request, prompt: [ids] })).choices[0].text).toBe(text.choices[0].text);
    expect((await client.completions.create({ ...request, prompt: ['Once upon a time'] })).choices[0].text).toBe(text.choices[0].text);
    await expect(client.completions.create({ ...request, prompt: [1, 32000] })).rejects.toEqual(rejection('prompt', /prompt\[1\] is 32000/));
    await expect(client.completions.create({ ...request, prompt: ['a', 'b'] })).rejects.toEqual(rejection('prompt', /one prompt per request/));
    await expect(client.completions.create({ ...request, prompt: [] })).rejects.toEqual(rejection('prompt'));
  });

  test('stop takes up to 4 strings', async () => {
    const request = { model: 'tiny', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };
    const four = await client.completions.create({ ...request, stop: ['zq1', 'zq2', 'zq3', 'zq4'] });
    expect(four.choices[0].finish_reason).toBe('length');
    await expect(client.completions.create({ ...request, stop: ['a', 'b', 'c', 'd', 'e'] })).rejects.toEqual(rejection('stop', /at most 4/));
    await expect(client.completions.create({ ...request, stop: [''] })).rejects.toEqual(rejection('stop'));
  });

  test('cache stats and metrics', async () => {
    const stats = await (await fetch(`${url}/v1/cache/stats`)).json();
    expect(stats.cache).toMatchObject({ blockSize: 16, dtype: 'f16' });
    expect(stats.scheduler.steps).toBeGreaterThan(0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^pagedlm_kv_blocks_total 256$/m);
  });

  test('a client that disconnects mid-stream aborts its generation and frees its blocks', async () => {
    const stepsBefore = engine.stats().generatedTokens;
    const timers = watchTimers();
    await new Promise((resolve, reject) => {
      const noData = setTimeout(() => reject(new Error('no data')), 10000);
      const req = http.request(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy(); // vanish after the first chunk
          clearTimeout(noData);
          resolve();
        });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ prompt: 'Tell me everything', max_tokens: 250, stream: true, ignore_eos: true }));
    });
    await waitFor(() => engine.stats().running === 0);
    expect(engine.stats().generatedTokens - stepsBefore).toBeLessThan(250);
    expect(engine.cache.stats().blocksInUse).toBe(0);
    // Nor does it leave a timer behind (a stall timer armed by writes to the closed socket held the process 30 s).
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(timers.stillArmed()).toEqual([]);
  });

  test('load: 200 requests at concurrency 16 with zero errors', async () => {
    const result = await autocannon({
      url: `${url}/v1/completions`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'The weather today is', max_tokens: 4, temperature: 0.5 }),
      connections: 16,
      amount: 200,
      timeout: 60,
    });
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result['2xx']).toBe(200);
    console.log(`load: 200 requests at concurrency 16, latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms`);
  });
});

describeWithModels('safe server settings', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  let server;
  let url;
  beforeAll(async () => {
    // A context long enough that a 4000-token generation is still running at the request timeout.
    engine = await Engine.load(modelPath, { contextLength: 4096, kvCache: { blocks: 300 } });
    ({ server, url } = await startRouter(engine, { apiKey: ['key-a', 'key-b'], maxPromptTokens: 64, maxN: 2, requestTimeoutMs: 300 }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });
  const post = (key, body, headers = {}) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
      body: JSON.stringify(body),
    });

  test('an API key is required on /v1', async () => {
    expect((await post(null, { prompt: 'hi', max_tokens: 2 })).status).toBe(401);
    const wrong = await post('nope', { prompt: 'hi', max_tokens: 2 });
    expect(wrong.status).toBe(401);
    expect((await wrong.json()).error.code).toBe('invalid_api_key');
    expect((await post('key-a', { prompt: 'hi', max_tokens: 2 })).status).toBe(200);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'key-b', maxRetries: 0 });
    expect((await client.models.list()).data).toHaveLength(1);
  });

  test('caps on prompt length and n give clear 400s', async () => {
    const long = await post('key-a', { prompt: 'word '.repeat(200), max_tokens: 2 });
    expect(long.status).toBe(400);
    expect((await long.json()).error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
    const many = await post('key-a', { prompt: 'hi', n: 5 });
    expect(many.status).toBe(400);
    expect((await many.json()).error.param).toBe('n');
  });

  test('tenants (API keys or the tenant header) never share cached prefixes', async () => {
    const prompt = 'A shared system prompt that is long enough to fill a few whole KV blocks of sixteen tokens each, surely.';
    await engine.cache.clear();
    await post('key-a', { prompt, max_tokens: 1 });
    const before = engine.cache.stats().hitTokens;
    await post('key-b', { prompt, max_tokens: 1 });
    await post('key-a', { prompt, max_tokens: 1 }, { 'x-pagedlm-tenant': 'acme' });
    expect(engine.cache.stats().hitTokens).toBe(before);
    await post('key-a', { prompt, max_tokens: 1 });
    expect(engine.cache.stats().hitTokens).toBeGreaterThan(before);
  });

  test('a generation running past the request timeout is cut short, reported as a 504, and frees its blocks', async () => {
    const started = Date.now();
    const response = await post('key-a', { prompt: 'Go on forever', max_tokens: 4000, ignore_eos: true });
    const body = await response.json();
    expect(response.status).toBe(504);
    expect(response.headers.get('x-should-retry')).toBe('false');
    expect(body.error).toMatchObject({ type: 'server_error', code: 'request_timeout' });
    expect(body.error.message).toMatch(/request timeout of 300 ms and was stopped, after \d+ generated tokens/);
    expect(Date.now() - started).toBeLessThan(5000);
    await waitFor(() => engine.stats().running === 0);
    expect(engine.cache.stats().blocksInUse).toBe(0);
  });
});
