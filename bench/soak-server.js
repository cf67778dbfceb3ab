#!/usr/bin/env node
'use strict';
// npm run soak [-- requests concurrency]: 10,000 requests through the Express server (OpenAI API) at
// concurrency 32 on a tiny model, with random prompt lengths, random max_tokens, streaming and not, and
// ~10% of clients vanishing mid-request. Reports unexpected errors (must be 0), latency p50/p99 of completed
// requests, KV blocks free before and after (must be equal), and RSS over time (must stay within 64 MiB
// of its level after warm-up). Exits non-zero when a check fails.
const http = require('node:http');
const express = require('express');
const { Engine } = require('..');
const { createRouter } = require('../express');
const { sharedModel } = require('../test/support/models');

const TOTAL = Number(process.argv[2]) || 10000;
const CONCURRENCY = Number(process.argv[3]) || 32;
const RSS_BOUND = 64 * 2 ** 20;
const WORDS = 'the a cat dog ran over under quickly slowly bright dark model engine token cache block paged memory'.split(' ');

function prng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

// One HTTP request; resolves to { outcome: 'ok' | 'aborted' | 'unexpected', ms, detail }.
function request(agent, port, body, abortAfterMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    const done = (outcome, detail) => {
      if (settled) return;
      settled = true;
      resolve({ outcome, ms: performance.now() - started, detail });
    };
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) return done('unexpected', `HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
        const ok = body.stream ? text.trimEnd().endsWith('data: [DONE]') : Array.isArray(JSON.parse(text).choices);
        done(ok ? 'ok' : 'unexpected', ok ? '' : `malformed body: ${text.slice(0, 200)}`);
      });
      res.on('error', () => done(abortAfterMs !== null ? 'aborted' : 'unexpected', 'response error'));
    });
    req.on('error', (error) => done(abortAfterMs !== null ? 'aborted' : 'unexpected', error.message));
    if (abortAfterMs !== null) setTimeout(() => req.destroy(), abortAfterMs);
    req.end(JSON.stringify(body));
  });
}

async function main() {
  const model = sharedModel('stories260K.gguf');
  if (!model) throw new Error('the soak needs ../shared/models/stories260K.gguf');
  const engine = await Engine.load(model, { kvCache: { blocks: 128 }, maxBatchTokens: 256 });
  const app = express();
  app.use(createRouter(engine, { maxTokens: 64 }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = server.address().port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const random = prng(2024);
  const rss = [];
  const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 1000);
  const results = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < TOTAL) {
      next++;
      const words = Array.from({ length: 1 + Math.floor(random() * 60) }, () => WORDS[Math.floor(random() * WORDS.length)]);
      const body = { prompt: words.join(' '), max_tokens: 1 + Math.floor(random() * 32), temperature: 0.8, stream: random() < 0.5, ignore_eos: random() < 0.5 };
      const abortAfter = random() < 0.1 ? Math.floor(random() * 20) : null;
      results.push(await request(agent, port, body, abortAfter));
      if (results.length % 1000 === 0) process.stderr.write(`${results.length} requests...\n`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  while (engine.stats().running + engine.stats().waiting > 0) await new Promise((r) => setTimeout(r, 20));
  const inUseAfter = engine.stats().blocksInUse;
  agent.destroy();
  await new Promise((resolve) => server.close(resolve));
  const stats = engine.stats();
  await engine.close();

  const ok = results.filter((r) => r.outcome === 'ok');
  const unexpected = results.filter((r) => r.outcome === 'unexpected');
  const warm = rss.slice(Math.min(3, rss.length - 1));
  const rssGrowth = Math.max(...warm) - warm[0];
  console.log(`soak: ${TOTAL} requests at concurrency ${CONCURRENCY} in ${seconds.toFixed(1)} s (stories260K, ${stats.generatedTokens} tokens generated, ${stats.preemptions} preemptions)`);
  console.table([
    {
      completed: ok.length,
      'aborted by client': results.filter((r) => r.outcome === 'aborted').length,
      'unexpected errors': unexpected.length,
      'p50 ms': percentile(ok.map((r) => r.ms), 50).toFixed(1),
      'p99 ms': percentile(ok.map((r) => r.ms), 99).toFixed(1),
      'KV blocks in use after': inUseAfter,
      'RSS MiB first/max/last': `${(warm[0] / 2 ** 20).toFixed(1)} / ${(Math.max(...warm) / 2 ** 20).toFixed(1)} / ${(warm[warm.length - 1] / 2 ** 20).toFixed(1)}`,
    },
  ]);
  for (const u of unexpected.slice(0, 5)) console.error(`unexpected: ${u.detail}`);
  const failures = [];
  if (unexpected.length) failures.push(`${unexpected.length} unexpected errors`);
  if (inUseAfter !== 0) failures.push(`KV blocks leaked: ${inUseAfter}`);
  if (rssGrowth > RSS_BOUND) failures.push(`RSS grew ${(rssGrowth / 2 ** 20).toFixed(1)} MiB after warm-up (bound 64 MiB)`);
  if (failures.length) {
    console.error(`soak FAILED: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log(`soak passed: 0 unexpected errors, no leaked blocks, RSS within ${(rssGrowth / 2 ** 20).toFixed(1)} MiB after warm-up`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
