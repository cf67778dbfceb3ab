'use strict';
// The router's Prometheus metrics, through prom-client, in a registry of each router's own (two routers in
// one process do not collide). Engine totals are counters, engine levels gauges, both read at scrape time;
// per-request latencies and sizes are histograms observed as each request ends. docs/api.md lists them.
const promClient = require('prom-client');

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TOKEN_TIME_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1];
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const TOKEN_COUNT_BUCKETS = promClient.exponentialBuckets(1, 4, 9); // 1 ... 65536

function createMetrics(engine) {
  const registry = new promClient.Registry();
  const registers = [registry];
  const name = (suffix) => `pagedlm_${suffix}`;

  const gauge = (suffix, help, read) =>
    new promClient.Gauge({
      name: name(suffix),
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  // An engine total: the counter advances by what the engine added since the last scrape.
  const engineCounter = (suffix, help, read) => {
    let seen = 0;
    return new promClient.Counter({
      name: name(suffix),
      help,
      registers,
      collect() {
        const total = read();
        if (total > seen) this.inc(total - seen);
        seen = Math.max(seen, total);
      },
    });
  };

  gauge('requests_running', 'Requests (completions) being computed.', () => engine.stats().running);
  gauge('requests_waiting', 'Requests (completions) queued.', () => engine.stats().waiting);
  gauge('tokens_per_second', 'Generated tokens per second of engine work.', () => engine.stats().tokensPerSecond);
  gauge('kv_blocks_total', 'KV blocks in the pool.', () => engine.cache.stats().blocksTotal);
  gauge('kv_blocks_in_use', 'KV blocks held by requests or pins.', () => engine.cache.stats().blocksInUse);
  gauge('kv_blocks_cached', 'KV blocks holding cached prefixes that no request holds.', () => engine.cache.stats().blocksCached);
  gauge('prefix_hit_rate', 'Prompt tokens served from the prefix cache / prompt tokens looked up.', () => engine.cache.stats().hitRate);
  engineCounter('preemptions_total', 'Requests preempted to free KV blocks.', () => engine.stats().preemptions);
  engineCounter('generated_tokens_total', 'Tokens generated, all requests.', () => engine.stats().generatedTokens);
  engineCounter('computed_tokens_total', 'Tokens run through the model (prefill and decode).', () => engine.stats().computedTokens);
  engineCounter('prefix_hit_tokens_total', 'Prompt tokens served from the prefix cache.', () => engine.cache.stats().hitTokens);
  engineCounter('kv_evictions_total', 'Cached KV blocks reused for other tokens.', () => engine.cache.stats().evictions);

  const labelNames = ['endpoint'];
  const histogram = (suffix, help, buckets) => new promClient.Histogram({ name: name(suffix), help, buckets, labelNames, registers });
  const requests = new promClient.Counter({
    name: name('requests_total'),
    help: 'Requests answered, by endpoint and outcome (stop, length, tool_calls, timeout, disconnect, error).',
    labelNames: ['endpoint', 'outcome'],
    registers,
  });
  const ttft = histogram('time_to_first_token_seconds', 'From submission to the first generated token.', LATENCY_BUCKETS);
  const tpot = histogram('time_per_output_token_seconds', 'Time per generated token after the first.', TOKEN_TIME_BUCKETS);
  const duration = histogram('request_duration_seconds', 'From the request to the end of its response.', DURATION_BUCKETS);
  const promptTokens = histogram('prompt_tokens', 'Prompt tokens per request.', TOKEN_COUNT_BUCKETS);
  const generatedTokens = histogram('generation_tokens', 'Tokens generated per request (all n completions).', TOKEN_COUNT_BUCKETS);

  return {
    registry,
    /** A request that ended with a result (finished, cut short by the timeout, or its client gone). */
    finished(endpoint, outcome, result, seconds) {
      requests.inc({ endpoint, outcome });
      duration.observe({ endpoint }, seconds);
      promptTokens.observe({ endpoint }, result.usage.promptTokens);
      generatedTokens.observe({ endpoint }, result.usage.completionTokens);
      if (result.usage.completionTokens > 0) ttft.observe({ endpoint }, result.timings.ttftMs / 1000);
      if (result.timings.tokensPerSecond > 0) tpot.observe({ endpoint }, 1 / result.timings.tokensPerSecond);
    },
    /** A request refused or failed before it had a result. */
    failed(endpoint, seconds) {
      requests.inc({ endpoint, outcome: 'error' });
      duration.observe({ endpoint }, seconds);
    },
  };
}

module.exports = { createMetrics };
