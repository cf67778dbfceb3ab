'use strict';
// An Express router speaking the OpenAI HTTP API over one pagedlm Engine:
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models
//   GET /v1/cache/stats (cache + scheduler counters)   GET /metrics (Prometheus text)
//   GET / (a small streaming chat page, with { ui: true })
// Streaming uses server-sent events; a client that disconnects aborts its generation.
//
//   const { createRouter } = require('pagedlm/express');
//   app.use(createRouter(engine, { model: 'my-model' }));
const crypto = require('node:crypto');
const path = require('node:path');
const express = require('express');

const ERROR_STATUS = {
  ERR_CONTEXT_OVERFLOW: [400, 'context_length_exceeded'],
  ERR_POOL_TOO_SMALL: [400, 'request_too_large'],
  ERR_INVALID_ARGUMENT: [400, 'invalid_value'],
  ERR_CLOSED: [503, 'engine_closed'],
};

class HttpError extends Error {
  constructor(status, message, { type = 'invalid_request_error', param = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
  }
}

function toHttpError(error) {
  if (error instanceof HttpError) return error;
  if (error?.type === 'entity.parse.failed') return new HttpError(400, `request body is not valid JSON: ${error.message}`);
  if (error?.type === 'entity.too.large') return new HttpError(413, 'request body too large');
  if (error instanceof TypeError || error instanceof RangeError) return new HttpError(400, error.message);
  const mapped = ERROR_STATUS[error?.code];
  if (mapped) return new HttpError(mapped[0], error.message, { code: mapped[1], type: mapped[0] === 503 ? 'server_error' : 'invalid_request_error' });
  return new HttpError(500, error?.message || 'internal error', { type: 'server_error' });
}

function sendError(res, error) {
  const e = toHttpError(error);
  if (res.headersSent) {
    // Mid-stream: report in-band, then end the stream.
    res.write(`data: ${JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } })}\n\n`);
    res.end();
    return;
  }
  res.status(e.status).json({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

// OpenAI request fields -> generate() options. Unknown fields are ignored, as OpenAI's clients send many.
function generationOptions(body, limits) {
  const number = (name) => {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number') throw new HttpError(400, `${name} must be a number`, { param: name });
    return v;
  };
  const maxTokens = number('max_completion_tokens') ?? number('max_tokens') ?? limits.defaultMaxTokens;
  if (maxTokens > limits.maxTokens) throw new HttpError(400, `max_tokens must be at most ${limits.maxTokens}`, { param: 'max_tokens' });
  const n = number('n') ?? 1;
  if (n > limits.maxN) throw new HttpError(400, `n must be at most ${limits.maxN}`, { param: 'n' });
  const options = {
    maxTokens,
    n,
    temperature: number('temperature') ?? 1,
    topP: number('top_p') ?? 1,
    topK: number('top_k') ?? 0,
    minP: number('min_p') ?? 0,
    seed: number('seed'),
    frequencyPenalty: number('frequency_penalty'),
    presencePenalty: number('presence_penalty'),
    repetitionPenalty: number('repetition_penalty'),
  };
  if (body.stop !== undefined && body.stop !== null) options.stop = body.stop;
  if (typeof body.ignore_eos === 'boolean') options.ignoreEos = body.ignore_eos; // an extension, as in vLLM
  return options;
}

// The prefix-cache salt of a request: tenants never share cached prefixes unless the router is told to.
function saltOf(req, body, limits) {
  if (limits.shareCache) return undefined;
  const tenant = req.get('x-pagedlm-tenant');
  if (tenant) return `tenant:${tenant}`;
  if (req.pagedlmApiKey) return `key:${crypto.createHash('sha256').update(req.pagedlmApiKey).digest('hex')}`;
  if (limits.saltByUser && typeof body.user === 'string') return `user:${body.user}`;
  return undefined;
}

function checkApiKey(keys) {
  const allowed = new Set(Array.isArray(keys) ? keys : [keys]);
  return (req, res, next) => {
    const match = /^Bearer\s+(.+)$/i.exec(req.get('authorization') || '');
    if (!match || !allowed.has(match[1])) {
      return sendError(res, new HttpError(401, 'missing or wrong API key: send Authorization: Bearer <key>', { code: 'invalid_api_key' }));
    }
    req.pagedlmApiKey = match[1];
    next();
  };
}

function usageOf(result) {
  const { promptTokens, completionTokens } = result.usage;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

const FINISH = { stop: 'stop', length: 'length', abort: 'stop' };

/**
 * options: { model: id reported by /v1/models (default: the GGUF name), ui: serve the chat page at GET /,
 *            apiKey: a key or keys required as `Authorization: Bearer <key>` (default none),
 *            maxTokens: cap on max_tokens (default 4096), defaultMaxTokens (default 512), maxN (default 8),
 *            maxPromptTokens: cap on prompt length (default: the engine's context), bodyLimit (default '1mb'),
 *            requestTimeoutMs: longest generation (default 600000), stallTimeoutMs: how long a streaming
 *            client may stop reading before it is dropped (default 30000),
 *            saltByUser (default true), shareCache: let tenants share cached prefixes (default false) }
 * Cache salt per request: the X-Pagedlm-Tenant header, else the API key, else the body's `user`.
 */
function createRouter(engine, options = {}) {
  const info = engine.info();
  const model = options.model ?? (info.name || 'pagedlm');
  const limits = {
    maxTokens: options.maxTokens ?? 4096,
    defaultMaxTokens: options.defaultMaxTokens ?? 512,
    maxN: options.maxN ?? 8,
    saltByUser: options.saltByUser ?? true,
    shareCache: options.shareCache ?? false,
    maxPromptTokens: options.maxPromptTokens ?? info.contextLength,
    requestTimeoutMs: options.requestTimeoutMs ?? 600000,
    stallTimeoutMs: options.stallTimeoutMs ?? 30000,
  };
  const created = Math.floor(Date.now() / 1000);
  const router = express.Router();
  router.use(express.json({ limit: options.bodyLimit ?? '1mb' }));

  if (options.ui) router.get('/', (req, res) => res.sendFile(path.join(__dirname, 'ui', 'chat.html')));
  if (options.apiKey) router.use('/v1', checkApiKey(options.apiKey));

  router.get('/v1/models', (req, res) => {
    res.json({ object: 'list', data: [{ id: model, object: 'model', created, owned_by: 'pagedlm' }] });
  });

  router.get('/v1/cache/stats', (req, res) => res.json({ cache: engine.cache.stats(), scheduler: engine.stats() }));

  router.get('/metrics', (req, res) => {
    const lines = [];
    const add = (name, value, help) => lines.push(`# HELP pagedlm_${name} ${help}`, `# TYPE pagedlm_${name} gauge`, `pagedlm_${name} ${value}`);
    const c = engine.cache.stats();
    const s = engine.stats();
    add('requests_running', s.running, 'Requests being computed.');
    add('requests_waiting', s.waiting, 'Requests queued.');
    add('preemptions_total', s.preemptions, 'Requests preempted to free KV blocks.');
    add('generated_tokens_total', s.generatedTokens, 'Tokens generated.');
    add('tokens_per_second', s.tokensPerSecond, 'Generated tokens per second of engine work.');
    add('kv_blocks_total', c.blocksTotal, 'KV blocks in the pool.');
    add('kv_blocks_in_use', c.blocksInUse, 'KV blocks held by requests.');
    add('kv_blocks_cached', c.blocksCached, 'KV blocks holding cached prefixes.');
    add('prefix_hit_rate', c.hitRate, 'Prompt tokens served from the prefix cache / prompt tokens.');
    res.type('text/plain; version=0.0.4').send(`${lines.join('\n')}\n`);
  });

  const handler = (kind) => async (req, res) => {
    const body = req.body;
    try {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
      const gen = generationOptions(body, limits);
      gen.cacheSalt = saltOf(req, body, limits);
      const controller = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) controller.abort(); // the client went away
      });
      const deadline = setTimeout(() => controller.abort(), limits.requestTimeoutMs);
      res.on('close', () => clearTimeout(deadline));
      gen.signal = controller.signal;
      const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID()}`;
      const start = kind === 'chat' ? chatRequest(engine, body, gen, limits) : completionRequest(engine, body, gen, limits);
      if (body.stream) {
        await streamResponse(res, start, { id, kind, model, includeUsage: body.stream_options?.include_usage === true, n: gen.n, stallTimeoutMs: limits.stallTimeoutMs, abort: () => controller.abort() });
      } else {
        const result = await start(false);
        res.json(completionBody(result, { id, kind, model }));
      }
    } catch (error) {
      if (!res.writableEnded && !res.destroyed) sendError(res, error);
    }
  };

  router.post('/v1/chat/completions', handler('chat'));
  router.post('/v1/completions', handler('completion'));
  router.use((req, res) => sendError(res, new HttpError(404, `no route for ${req.method} ${req.path}`, { code: 'not_found' })));
  router.use((error, req, res, next) => sendError(res, error)); // eslint-disable-line no-unused-vars
  return router;
}

function checkPromptLength(count, limits, param) {
  if (count > limits.maxPromptTokens) {
    throw new HttpError(400, `the prompt has ${count} tokens; this server accepts at most ${limits.maxPromptTokens}`, { param, code: 'context_length_exceeded' });
  }
}

function chatRequest(engine, body, gen, limits) {
  if (!Array.isArray(body.messages)) throw new HttpError(400, 'messages must be an array', { param: 'messages' });
  const messages = body.messages.map((m) => ({ role: m?.role, content: Array.isArray(m?.content) ? m.content.map((p) => p?.text ?? '').join('') : m?.content }));
  const rendered = engine.chatPrompt(messages);
  checkPromptLength(engine.tokenize(rendered.text, { addBos: rendered.addBos, special: true }).length, limits, 'messages');
  return (stream) => engine.chat(messages, { ...gen, stream });
}

function completionRequest(engine, body, gen, limits) {
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (typeof prompt !== 'string') throw new HttpError(400, 'prompt must be a string', { param: 'prompt' });
  checkPromptLength(engine.tokenize(prompt).length, limits, 'prompt');
  return (stream) => (stream ? engine.stream(prompt, gen) : engine.generate(prompt, gen));
}

function completionBody(result, { id, kind, model }) {
  const created = Math.floor(Date.now() / 1000);
  const choices = result.choices.map((c) =>
    kind === 'chat'
      ? { index: c.index, message: { role: 'assistant', content: c.text }, finish_reason: FINISH[c.finishReason], logprobs: null }
      : { index: c.index, text: c.text, finish_reason: FINISH[c.finishReason], logprobs: null },
  );
  return { id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model, choices, usage: usageOf(result) };
}

async function streamResponse(res, start, { id, kind, model, includeUsage, n, stallTimeoutMs, abort }) {
  const stream = start(true);
  const created = Math.floor(Date.now() / 1000);
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  // A client that stops reading must not hold KV blocks: if its socket stays full past the stall timeout,
  // the generation is aborted and the connection dropped.
  let stall = null;
  const send = (payload) => {
    if (res.destroyed) return; // the client is gone: its close already aborted the generation
    if (res.write(`data: ${JSON.stringify(payload)}\n\n`) || stall) return;
    stall = setTimeout(() => {
      abort();
      res.destroy();
    }, stallTimeoutMs);
    res.once('drain', () => {
      clearTimeout(stall);
      stall = null;
    });
  };
  res.on('close', () => clearTimeout(stall));
  const chunk = (index, text, finishReason = null) =>
    kind === 'chat'
      ? { id, object, created, model, choices: [{ index, delta: finishReason ? {} : { content: text }, finish_reason: finishReason, logprobs: null }] }
      : { id, object, created, model, choices: [{ index, text, finish_reason: finishReason, logprobs: null }] };
  let headers = false;
  const openStream = () => {
    if (headers) return;
    headers = true;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    if (kind === 'chat') {
      for (let index = 0; index < n; index++) send({ id, object, created, model, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }] });
    }
  };
  try {
    for await (const token of stream) {
      openStream();
      if (token.text) send(chunk(token.index, token.text));
    }
  } catch (error) {
    if (!headers) throw error; // nothing sent yet: a proper HTTP error
    sendError(res, error);
    return;
  }
  const result = await stream.result;
  if (res.destroyed) return;
  openStream();
  for (const c of result.choices) send(chunk(c.index, '', FINISH[c.finishReason]));
  if (includeUsage) send({ id, object, created, model, choices: [], usage: usageOf(result) });
  res.write('data: [DONE]\n\n');
  res.end();
}

module.exports = { createRouter, HttpError };
