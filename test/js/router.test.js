'use strict';
// How the router sits in an app: its 404 only under /v1, Prometheus metrics typed as what they are,
// /metrics behind the API key on request, and a request timeout reported as one.
const express = require('express');
const OpenAI = require('openai');
const { Engine } = require('../..');
const { createRouter } = require('../../express');
const { describeWithModels } = require('../support/models');

async function listen(app) {
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

function close(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

/** Prometheus text exposition -> { types: { name: type }, samples: [{ name, labels, value }] }. */
function parseExposition(text) {
  const types = {};
  const samples = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types[type[1]] = type[2];
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (sample) {
      const labels = Object.fromEntries([...(sample[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      samples.push({ name: sample[1], labels, value: Number(sample[3]) });
    }
  }
  return { types, samples };
}

const value = (samples, name, labels = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

describeWithModels('the router in an app', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 4096, kvCache: { blocks: 300 } });
  });
  afterAll(() => engine.close());

  test('mounted at /, it leaves the app its later routes and bodies; its 404 is under /v1 only', async () => {
    const app = express();
    app.use('/', createRouter(engine, { ui: true }));
    app.get('/health', (req, res) => res.send('fine'));
    app.post('/raw', express.text({ type: '*/*' }), (req, res) => res.send(`got ${req.body}`));
    const { server, url } = await listen(app);
    try {
      expect(await (await fetch(`${url}/health`)).text()).toBe('fine');
      // Not JSON, sent as JSON: the router's body parser must not claim it.
      const raw = await fetch(`${url}/raw`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
      expect(await raw.text()).toBe('got {not json');
      const missing = await fetch(`${url}/v1/nothing-here`);
      expect(missing.status).toBe(404);
      expect((await missing.json()).error.code).toBe('not_found');
      expect((await fetch(`${url}/elsewhere`)).status).toBe(404); // Express's own 404, not the router's
      expect((await fetch(`${url}/`)).headers.get('content-type')).toMatch(/text\/html/);
    } finally {
      await close(server);
    }
  });

  test('/metrics: counters are counters, levels gauges, latencies and sizes histograms', async () => {
    const app = express();
    app.use(createRouter(engine));
    const { server, url } = await listen(app);
    try {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
      await client.completions.create({ prompt: 'Hello', max_tokens: 5, ignore_eos: true, model: 'm' });
      await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, ignore_eos: true, model: 'm' });
      const response = await fetch(`${url}/metrics`);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const { types, samples } = parseExposition(await response.text());
      for (const name of ['preemptions_total', 'generated_tokens_total', 'computed_tokens_total', 'prefix_hit_tokens_total', 'kv_evictions_total', 'requests_total']) {
        expect([name, types[`pagedlm_${name}`]]).toEqual([name, 'counter']);
      }
      for (const name of ['requests_running', 'requests_waiting', 'tokens_per_second', 'kv_blocks_total', 'kv_blocks_in_use', 'kv_blocks_cached', 'prefix_hit_rate']) {
        expect([name, types[`pagedlm_${name}`]]).toEqual([name, 'gauge']);
      }
      const histograms = ['time_to_first_token_seconds', 'time_per_output_token_seconds', 'request_duration_seconds', 'prompt_tokens', 'generation_tokens'];
      for (const name of histograms) expect([name, types[`pagedlm_${name}`]]).toEqual([name, 'histogram']);

      expect(value(samples, 'pagedlm_generated_tokens_total')).toBe(engine.stats().generatedTokens);
      expect(value(samples, 'pagedlm_kv_blocks_total')).toBe(300);
      expect(value(samples, 'pagedlm_requests_total', { endpoint: 'completion', outcome: 'length' })).toBe(1);
      expect(value(samples, 'pagedlm_requests_total', { endpoint: 'chat', outcome: 'length' })).toBe(1);
      for (const name of histograms) {
        expect([name, value(samples, `pagedlm_${name}_count`, { endpoint: 'completion' })]).toEqual([name, 1]);
        expect([name, value(samples, `pagedlm_${name}_bucket`, { endpoint: 'completion', le: '+Inf' })]).toEqual([name, 1]);
      }
      expect(value(samples, 'pagedlm_generation_tokens_sum', { endpoint: 'completion' })).toBe(5);
      expect(value(samples, 'pagedlm_generation_tokens_sum', { endpoint: 'chat' })).toBe(3);

      // A counter only grows: a second scrape after more work reads more, by exactly that work.
      await client.completions.create({ prompt: 'Hello', max_tokens: 4, ignore_eos: true, model: 'm' });
      const again = parseExposition(await (await fetch(`${url}/metrics`)).text()).samples;
      expect(value(again, 'pagedlm_generated_tokens_total')).toBe(value(samples, 'pagedlm_generated_tokens_total') + 4);
      expect(value(again, 'pagedlm_requests_total', { endpoint: 'completion', outcome: 'length' })).toBe(2);
    } finally {
      await close(server);
    }
  });

  test('/metrics is open beside an API key unless protectMetrics asks for the key', async () => {
    for (const [protectMetrics, status] of [[false, 200], [true, 401]]) {
      const app = express();
      app.use(createRouter(engine, { apiKey: 'secret', protectMetrics }));
      const { server, url } = await listen(app);
      try {
        expect([protectMetrics, (await fetch(`${url}/metrics`)).status]).toEqual([protectMetrics, status]);
        const keyed = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer secret' } });
        expect(keyed.status).toBe(200);
        expect(await keyed.text()).toMatch(/^pagedlm_kv_blocks_total 300$/m);
      } finally {
        await close(server);
      }
    }
  });

  describe('a generation stopped by the request timeout', () => {
    let server;
    let url;
    let posts = 0;
    beforeAll(async () => {
      const app = express();
      app.use((req, res, next) => {
        if (req.method === 'POST') posts++;
        next();
      });
      app.use(createRouter(engine, { requestTimeoutMs: 300 }));
      ({ server, url } = await listen(app));
    });
    afterAll(() => close(server));
    // Thousands of tokens at a 4096 context take seconds: the timeout always comes first.
    const forever = { model: 'm', max_tokens: 4000, ignore_eos: true };

    test('is a 504 request_timeout, which OpenAI clients do not retry', async () => {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none' }); // the client's default retries
      posts = 0;
      const failure = await client.completions.create({ ...forever, prompt: 'Go on' }).catch((error) => error);
      expect(failure).toBeInstanceOf(OpenAI.APIError);
      expect(failure.status).toBe(504);
      expect(failure.code).toBe('request_timeout');
      expect(failure.message).toMatch(/request timeout of 300 ms/);
      expect(posts).toBe(1);
    });

    test('streamed, it ends in an error naming the timeout, with no finish_reason', async () => {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
      const finishes = [];
      let text = '';
      const failure = await (async () => {
        const stream = await client.chat.completions.create({ ...forever, messages: [{ role: 'user', content: 'Go on' }], stream: true });
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta?.content ?? '';
          if (chunk.choices[0]?.finish_reason) finishes.push(chunk.choices[0].finish_reason);
        }
      })().catch((error) => error);
      expect(failure).toBeInstanceOf(Error);
      expect(failure.message).toMatch(/request timeout of 300 ms and was stopped/);
      expect(finishes).toEqual([]);
      expect(text.length).toBeGreaterThan(0); // tokens came before the timeout: the error arrived in-band
    });

    test('is counted as a timeout', async () => {
      const { samples } = parseExposition(await (await fetch(`${url}/metrics`)).text());
      expect(value(samples, 'pagedlm_requests_total', { endpoint: 'completion', outcome: 'timeout' })).toBe(1);
      expect(value(samples, 'pagedlm_requests_total', { endpoint: 'chat', outcome: 'timeout' })).toBe(1);
    });
  });
});
