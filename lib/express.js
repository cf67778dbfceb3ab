'use strict';
// An Express router speaking the OpenAI HTTP API over one pagedlm Engine:
//   POST /v1/chat/completions   POST /v1/completions   POST /v1/embeddings   GET /v1/models
//   GET /v1/cache/stats (cache + scheduler counters)   GET /metrics (Prometheus text)
//   GET / (a small streaming chat page, with { ui: true })
// Streaming uses server-sent events; a client that disconnects aborts its generation. Requests the router
// does not serve fall through to the app's later routes, except under /v1, which ends in an OpenAI 404.
//
//   const { createRouter } = require('pagedlm/express');
//   app.use(createRouter(engine, { model: 'my-model' }));
const crypto = require('node:crypto');
const path = require('node:path');
const express = require('express');
const { DEFAULT_SAMPLING } = require('./sampling');
const { createMetrics } = require('./metrics');
const { checkTools, checkToolChoice, ReplyGate } = require('./tools');
const { jsonSchemaToGrammar } = require('./grammar');
const { checkObject, checkKeys, checkBoolean, checkContextOverflow, closestKey, MAX_LOGPROBS, speculativeOption } = require('./options');
const { replyReserve, truncateOldest } = require('./overflow');

const ROUTER_KEYS = [
  'model', 'ui', 'apiKey', 'protectMetrics', 'maxTokens', 'defaultMaxTokens', 'maxN', 'maxPromptTokens', 'bodyLimit',
  'requestTimeoutMs', 'stallTimeoutMs', 'saltByUser', 'shareCache', 'contextOverflow',
];

const ERROR_STATUS = {
  ERR_CONTEXT_OVERFLOW: [400, 'context_length_exceeded'],
  ERR_POOL_TOO_SMALL: [400, 'request_too_large'],
  ERR_INVALID_ARGUMENT: [400, 'invalid_value'],
  ERR_UNSUPPORTED: [400, 'unsupported_value'], // e.g. a speculative proposer this engine lacks
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
  // A `param` on a library error names the part of the request it is about (messages[1].content).
  if (error instanceof TypeError || error instanceof RangeError) return new HttpError(400, error.message, { param: typeof error.param === 'string' ? error.param : null });
  const mapped = ERROR_STATUS[error?.code];
  if (mapped) return new HttpError(mapped[0], error.message, { code: mapped[1], type: mapped[0] === 503 ? 'server_error' : 'invalid_request_error' });
  return new HttpError(500, error?.message || 'internal error', { type: 'server_error' });
}

function sendError(res, error) {
  const e = toHttpError(error);
  if (e.code === 'request_timeout' && !res.headersSent) res.set('x-should-retry', 'false');
  if (res.headersSent) {
    // Mid-stream: report in-band, then end the stream.
    res.write(`data: ${JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } })}\n\n`);
    res.end();
    return;
  }
  res.status(e.status).json({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

// The request fields each endpoint implements. Any other field is a 400 naming it (with `param`): a field
// the server would ignore must not look honoured.
// The fields through which a request asks for log probabilities, per endpoint.
const LOGPROBS_FIELDS = { chat: ['logprobs', 'top_logprobs'], completion: ['logprobs'] };
const SHARED_FIELDS = [
  'model', 'stream', 'stream_options', 'max_tokens', 'n', 'temperature', 'top_p', 'stop', 'seed', 'user',
  'frequency_penalty', 'presence_penalty',
  'top_k', 'min_p', 'repetition_penalty', 'ignore_eos', // extensions, as in vLLM
  'speculative', // pagedlm's extension: generate()'s speculative option
];
const REQUEST_FIELDS = {
  chat: new Set([...SHARED_FIELDS, 'messages', 'max_completion_tokens', 'response_format', ...LOGPROBS_FIELDS.chat, 'tools', 'tool_choice', 'parallel_tool_calls']),
  completion: new Set([...SHARED_FIELDS, 'prompt', ...LOGPROBS_FIELDS.completion]),
  embedding: new Set(['input', 'model', 'encoding_format', 'dimensions', 'user']),
};
const ENDPOINTS = { chat: '/v1/chat/completions', completion: '/v1/completions', embedding: '/v1/embeddings' };
// OpenAI fields this server does not implement, with what a request that uses one is told.
const FUNCTIONS_UNSUPPORTED = 'the deprecated functions API is not supported: use tools and tool_choice';
const NOT_IMPLEMENTED = {
  functions: FUNCTIONS_UNSUPPORTED,
  function_call: FUNCTIONS_UNSUPPORTED,
};
const MAX_STOP_STRINGS = 4; // OpenAI's limit

// A 400 for the first field of `body` that `kind`'s endpoint does not implement. null, and false, ask for
// nothing, so an unimplemented OpenAI field sent with either is accepted (clients send explicit defaults).
function checkRequestFields(body, kind) {
  for (const [field, value] of Object.entries(body)) {
    if (REQUEST_FIELDS[kind].has(field)) continue;
    const reason = Object.hasOwn(NOT_IMPLEMENTED, field) ? NOT_IMPLEMENTED[field] : null;
    if (reason && (value === null || value === false)) continue;
    const endpoint = ENDPOINTS[kind];
    const closest = closestKey(field, REQUEST_FIELDS[kind]);
    const hint = closest ? `did you mean '${closest}'?` : `it accepts ${[...REQUEST_FIELDS[kind]].join(', ')}`;
    const message = reason ? `${field}: ${reason}` : `unsupported field '${field}' in ${endpoint}: ${hint}`;
    throw new HttpError(400, message, { param: field, code: 'unsupported_parameter' });
  }
}

// Reads one field of a request (of `body`, found at `prefix` in the request), with a 400 naming it when it
// has the wrong type; null is the default.
function fieldReader(body, prefix = '') {
  const read = (name, check, expected) => {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (!check(v)) throw new HttpError(400, `${prefix}${name} must be ${expected}, got ${JSON.stringify(v)}`, { param: `${prefix}${name}` });
    return v;
  };
  return {
    number: (name) => read(name, (v) => typeof v === 'number' && Number.isFinite(v), 'a number'),
    integer: (name, min) => read(name, (v) => Number.isInteger(v) && v >= min, `an integer of at least ${min}`),
    boolean: (name) => read(name, (v) => typeof v === 'boolean', 'true or false'),
    string: (name) => read(name, (v) => typeof v === 'string', 'a string'),
    object: (name) => read(name, (v) => typeof v === 'object' && !Array.isArray(v), 'an object'),
  };
}

// speculative -> generate()'s option as sent, checked here so that a bad value is a 400 naming the field.
function speculativeField(body) {
  if (body.speculative === null) return undefined;
  try {
    speculativeOption(body.speculative);
  } catch (error) {
    throw new HttpError(400, error.message, { param: 'speculative' });
  }
  return body.speculative;
}

function stopStrings(body) {
  const { stop } = body;
  if (stop === undefined || stop === null) return undefined;
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw new HttpError(400, 'stop must be a string or an array of strings', { param: 'stop' });
  if (list.length > MAX_STOP_STRINGS) throw new HttpError(400, `stop holds ${list.length} strings; at most ${MAX_STOP_STRINGS} are accepted`, { param: 'stop' });
  if (list.some((s) => s.length === 0)) throw new HttpError(400, 'stop strings must not be empty', { param: 'stop' });
  return list.length ? list : undefined;
}

/**
 * Checks a request's fields and maps them to generate() options, plus the router's own { stream, includeUsage }.
 * Sampling fields a request leaves out (or sends as null) are left out here too: generate() fills them from
 * DEFAULT_SAMPLING, as it does for the library and the CLI. `user` is read by saltOf() only.
 */
function generationOptions(body, kind, limits) {
  checkRequestFields(body, kind);
  const field = fieldReader(body);
  field.string('model'); // the router serves one model, whatever a request names
  field.string('user');
  const maxTokens = field.integer('max_completion_tokens', 1) ?? field.integer('max_tokens', 1) ?? limits.defaultMaxTokens;
  const n = field.integer('n', 1) ?? 1;
  const streamOptions = field.object('stream_options') ?? {};
  for (const key of Object.keys(streamOptions)) {
    if (key !== 'include_usage') throw new HttpError(400, `unsupported field 'stream_options.${key}': stream_options accepts include_usage`, { param: `stream_options.${key}`, code: 'unsupported_parameter' });
  }
  const includeUsage = fieldReader(streamOptions, 'stream_options.').boolean('include_usage') ?? false;
  const options = {
    maxTokens,
    n,
    temperature: field.number('temperature'),
    topP: field.number('top_p'),
    topK: field.integer('top_k', 0),
    minP: field.number('min_p'),
    seed: field.integer('seed', 0),
    frequencyPenalty: field.number('frequency_penalty'),
    presencePenalty: field.number('presence_penalty'),
    repetitionPenalty: field.number('repetition_penalty'),
    stop: stopStrings(body),
    ignoreEos: field.boolean('ignore_eos'),
    speculative: speculativeField(body),
  };
  if (kind === 'chat') {
    const format = responseFormat(body.response_format);
    Object.assign(options, format, toolOptions(body, Object.keys(format).length > 0));
  }
  const stream = field.boolean('stream') ?? false;
  // The server's caps, once every field is known to be well-formed.
  if (maxTokens > limits.maxTokens) throw new HttpError(400, `max_tokens must be at most ${limits.maxTokens}`, { param: 'max_tokens' });
  if (n > limits.maxN) throw new HttpError(400, `n must be at most ${limits.maxN}`, { param: 'n' });
  options.logprobs = kind === 'chat' ? chatLogprobs(body) : completionLogprobs(body);
  return { options, stream, includeUsage };
}

// tools, tool_choice, parallel_tool_calls -> chat()'s options, checked here so that errors name the fields.
// `formatted`: response_format constrains the reply, which a forced tool call constrains too.
function toolOptions(body, formatted) {
  const options = {};
  const tools = checkTools(body.tools, 'tools');
  const choice = checkToolChoice(body.tool_choice, tools, 'tool_choice');
  if (choice.mode === 'required' && formatted) {
    throw new HttpError(400, 'response_format cannot be combined with tool_choice "required" or a named function, which make the reply tool calls', { param: 'response_format' });
  }
  if (tools.length) options.tools = tools;
  if (body.tool_choice !== undefined && body.tool_choice !== null) options.toolChoice = body.tool_choice;
  const parallel = fieldReader(body).boolean('parallel_tool_calls');
  if (parallel !== undefined) options.parallelToolCalls = parallel;
  return options;
}

function checkLogprobCount(value, param) {
  if (!Number.isInteger(value) || value < 0 || value > MAX_LOGPROBS) {
    throw new HttpError(400, `${param} must be an integer from 0 to ${MAX_LOGPROBS}`, { param });
  }
  return value;
}

// Chat: `logprobs: true` asks for them, `top_logprobs` for that many alternatives -> generate()'s count.
function chatLogprobs(body) {
  const { logprobs, top_logprobs: top } = body;
  if (logprobs !== undefined && logprobs !== null && typeof logprobs !== 'boolean') throw new HttpError(400, 'logprobs must be a boolean', { param: 'logprobs' });
  if (top === undefined || top === null) return logprobs ? 0 : undefined;
  checkLogprobCount(top, 'top_logprobs');
  if (!logprobs) throw new HttpError(400, 'top_logprobs needs logprobs: true', { param: 'top_logprobs' });
  return top;
}

// response_format -> generate()'s grammar options: json_object is any JSON object; json_schema, JSON valid
// against its schema (enforced whether or not `strict` is set: the grammar never allows anything else).
function responseFormat(format) {
  if (format === undefined || format === null) return {};
  const param = 'response_format';
  if (typeof format !== 'object' || Array.isArray(format)) throw new HttpError(400, `${param} must be an object`, { param });
  const known = { text: ['type'], json_object: ['type'], json_schema: ['type', 'json_schema'] };
  const fields = known[format.type];
  if (!fields) throw new HttpError(400, `${param}.type must be 'text', 'json_object' or 'json_schema', got ${JSON.stringify(format.type)}`, { param: `${param}.type` });
  for (const key of Object.keys(format)) {
    if (!fields.includes(key)) throw new HttpError(400, `unsupported field '${param}.${key}' for type '${format.type}'`, { param: `${param}.${key}`, code: 'unsupported_parameter' });
  }
  if (format.type === 'text') return {};
  if (format.type === 'json_object') return { jsonSchema: { type: 'object' } };
  const spec = fieldReader(format, `${param}.`).object('json_schema');
  if (!spec) throw new HttpError(400, `${param}.json_schema is required for type 'json_schema'`, { param: `${param}.json_schema` });
  const reader = fieldReader(spec, `${param}.json_schema.`);
  for (const key of Object.keys(spec)) {
    if (!['name', 'description', 'schema', 'strict'].includes(key)) {
      throw new HttpError(400, `unsupported field '${param}.json_schema.${key}'`, { param: `${param}.json_schema.${key}`, code: 'unsupported_parameter' });
    }
  }
  if (typeof spec.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(spec.name)) {
    throw new HttpError(400, `${param}.json_schema.name must be 1 to 64 letters, digits, underscores or dashes`, { param: `${param}.json_schema.name` });
  }
  reader.string('description');
  reader.boolean('strict');
  const schema = spec.schema ?? {};
  try {
    jsonSchemaToGrammar(schema); // a schema it cannot enforce is this request's 400, naming the keyword
  } catch (error) {
    throw new HttpError(400, error.message, { param: `${param}.json_schema.schema` });
  }
  return { jsonSchema: schema };
}

// Completions: `logprobs: N`, the count itself (0: only the sampled token's).
function completionLogprobs(body) {
  return body.logprobs === undefined || body.logprobs === null ? undefined : checkLogprobCount(body.logprobs, 'logprobs');
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

// 'abort' reaches a response only when its client has gone: a timeout is reported by timeoutError().
const FINISH = { stop: 'stop', length: 'length', abort: 'stop', tool_calls: 'tool_calls' };

// A generation the server stopped at requestTimeoutMs is an error, not a finish: OpenAI's finish reasons
// have none that says "cut short by the server", and 'stop' or 'length' would pass truncated text off as
// complete. The client gets a 504 (or, mid-stream, an error event in place of the finish), and
// `x-should-retry: false` keeps OpenAI's clients from repeating a request that will time out again.
function timeoutError(limits, result) {
  const generated = result ? `, after ${result.usage.completionTokens} generated tokens` : '';
  return new HttpError(504, `the generation ran past this server's request timeout of ${limits.requestTimeoutMs} ms and was stopped${generated}`, {
    type: 'server_error',
    code: 'request_timeout',
  });
}

/**
 * options: { model: id reported by /v1/models (default: the GGUF name), ui: serve the chat page at GET /,
 *            apiKey: a key or keys required as `Authorization: Bearer <key>` (default none),
 *            protectMetrics: require the key on /metrics too (default false),
 *            maxTokens: cap on max_tokens (default 4096), defaultMaxTokens (default DEFAULT_SAMPLING.maxTokens),
 *            maxN (default 8),
 *            maxPromptTokens: cap on prompt length (default: the engine's context), bodyLimit (default '1mb'),
 *            requestTimeoutMs: longest generation (default 600000), stallTimeoutMs: how long a streaming
 *            client may stop reading before it is dropped (default 30000),
 *            saltByUser (default true), shareCache: let tenants share cached prefixes (default false),
 *            contextOverflow: 'error' (default: a 400 context_length_exceeded, as OpenAI answers) or
 *            'truncate-oldest' (chat completions drop their oldest turns, lib/overflow.js, and say how many
 *            messages in the x-pagedlm-truncated-messages header) }
 * Cache salt per request: the X-Pagedlm-Tenant header, else the API key, else the body's `user`.
 */
function createRouter(engine, options = {}) {
  checkKeys(checkObject(options, 'options'), ROUTER_KEYS, 'createRouter() options');
  checkBoolean(options.protectMetrics, 'protectMetrics');
  checkContextOverflow(options.contextOverflow);
  if (options.protectMetrics && !options.apiKey) throw new TypeError('protectMetrics needs apiKey: the key /metrics would require');
  const info = engine.info();
  const model = options.model ?? (info.name || 'pagedlm');
  const limits = {
    maxTokens: options.maxTokens ?? 4096,
    defaultMaxTokens: options.defaultMaxTokens ?? DEFAULT_SAMPLING.maxTokens,
    maxN: options.maxN ?? 8,
    saltByUser: options.saltByUser ?? true,
    shareCache: options.shareCache ?? false,
    maxPromptTokens: options.maxPromptTokens ?? info.contextLength,
    requestTimeoutMs: options.requestTimeoutMs ?? 600000,
    stallTimeoutMs: options.stallTimeoutMs ?? 30000,
    contextOverflow: options.contextOverflow ?? 'error',
    contextLength: info.contextLength,
  };
  const created = Math.floor(Date.now() / 1000);
  const metrics = createMetrics(engine);
  const router = express.Router();
  const v1 = express.Router();
  router.use('/v1', v1);
  v1.use(express.json({ limit: options.bodyLimit ?? '1mb' }));

  if (options.ui) router.get('/', (req, res) => res.sendFile(path.join(__dirname, 'ui', 'chat.html')));
  if (options.apiKey) v1.use(checkApiKey(options.apiKey));

  v1.get('/models', (req, res) => {
    res.json({ object: 'list', data: [{ id: model, object: 'model', created, owned_by: 'pagedlm' }] });
  });

  v1.get('/cache/stats', (req, res) => res.json({ cache: engine.cache.stats(), scheduler: engine.stats() }));

  const serveMetrics = async (req, res) => {
    try {
      const text = await metrics.registry.metrics();
      res.type(metrics.registry.contentType).send(text);
    } catch (error) {
      sendError(res, error); // e.g. ERR_CLOSED: a 503
    }
  };
  if (options.protectMetrics) router.get('/metrics', checkApiKey(options.apiKey), serveMetrics);
  else router.get('/metrics', serveMetrics);

  const handler = (kind) => async (req, res) => {
    const body = req.body;
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    let finished = false; // a result was recorded in the metrics
    try {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
      const { options: gen, stream, includeUsage } = generationOptions(body, kind, limits);
      gen.cacheSalt = saltOf(req, body, limits);
      const controller = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) controller.abort(); // the client went away
      });
      let timedOut = false;
      const deadline = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, limits.requestTimeoutMs);
      res.on('close', () => clearTimeout(deadline));
      gen.signal = controller.signal;
      const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID()}`;
      const start = kind === 'chat' ? chatRequest(engine, body, gen, limits) : completionRequest(engine, body, gen, limits);
      if (start.truncatedMessages !== undefined) res.set('x-pagedlm-truncated-messages', String(start.truncatedMessages));
      // How a request ended, once it has a result: the finish reason, or why it was cut short.
      const ended = (result) => {
        const aborted = result.choices.some((c) => c.finishReason === 'abort');
        const outcome = !aborted ? result.finishReason : timedOut ? 'timeout' : 'disconnect';
        metrics.finished(kind, outcome, result, seconds());
        finished = true;
        return outcome === 'timeout' ? timeoutError(limits, result) : null;
      };
      if (stream) {
        const mayCallTools = kind === 'chat' && gen.tools?.length > 0 && gen.toolChoice !== 'none';
        await streamResponse(res, start, { id, kind, model, includeUsage, n: gen.n, mayCallTools, stallTimeoutMs: limits.stallTimeoutMs, abort: () => controller.abort(), ended });
      } else {
        const result = await start(false);
        const error = ended(result);
        if (error) throw error;
        res.json(completionBody(result, { id, kind, model }));
      }
    } catch (error) {
      if (!finished) metrics.failed(kind, seconds());
      if (!res.writableEnded && !res.destroyed) sendError(res, error);
    }
  };

  v1.post('/chat/completions', handler('chat'));
  v1.post('/completions', handler('completion'));
  v1.post('/embeddings', embeddingsHandler(engine, model, limits, metrics));
  v1.use((req, res) => sendError(res, new HttpError(404, `no route for ${req.method} ${req.originalUrl.split('?')[0]}`, { code: 'not_found' })));
  v1.use((error, req, res, next) => sendError(res, error)); // eslint-disable-line no-unused-vars
  return router;
}

// POST /v1/embeddings: every input of a request is submitted at once (they share the engine's steps).
function embeddingsHandler(engine, model, limits, metrics) {
  return async (req, res) => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const { inputs, base64 } = embeddingRequest(req.body, engine, limits);
      const controller = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) controller.abort(); // the client went away
      });
      const timeout = new HttpError(504, `the embeddings ran past this server's request timeout of ${limits.requestTimeoutMs} ms and were stopped`, {
        type: 'server_error',
        code: 'request_timeout',
      });
      const deadline = setTimeout(() => controller.abort(timeout), limits.requestTimeoutMs);
      res.on('close', () => clearTimeout(deadline));
      const result = await engine.embed(inputs, { signal: controller.signal });
      // An embedding generates nothing: no first token, no time per token.
      metrics.finished('embedding', 'stop', { usage: { promptTokens: result.promptTokens, completionTokens: 0 }, timings: { ttftMs: 0, tokensPerSecond: 0 } }, seconds());
      const data = result.embeddings.map((vector, index) => ({ object: 'embedding', index, embedding: base64 ? base64Floats(vector) : Array.from(vector) }));
      res.json({ object: 'list', data, model, usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens } });
    } catch (error) {
      metrics.failed('embedding', seconds());
      if (!res.writableEnded && !res.destroyed) sendError(res, error);
    }
  };
}

// OpenAI's input forms: a string, token ids, or an array of either (at most 2048, none empty).
const MAX_EMBEDDING_INPUTS = 2048;
function embeddingRequest(body, engine, limits) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
  checkRequestFields(body, 'embedding');
  const field = fieldReader(body);
  field.string('model');
  field.string('user');
  const format = field.string('encoding_format') ?? 'float';
  if (format !== 'float' && format !== 'base64') throw new HttpError(400, `encoding_format must be 'float' or 'base64', got ${JSON.stringify(format)}`, { param: 'encoding_format' });
  const { embeddingLength, vocabSize } = engine.info();
  const dimensions = field.integer('dimensions', 1);
  if (dimensions !== undefined && dimensions !== embeddingLength) {
    throw new HttpError(400, `dimensions must be this model's embedding length, ${embeddingLength}: its vectors are not trained to be shortened`, { param: 'dimensions' });
  }
  const { input } = body;
  const isTokenIds = (x) => Array.isArray(x) && x.length > 0 && x.every((id) => typeof id === 'number');
  const inputs = typeof input === 'string' || isTokenIds(input) ? [input] : input;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((x) => typeof x === 'string' || isTokenIds(x))) {
    throw new HttpError(400, 'input must be a non-empty string, an array of token ids, or a non-empty array of those', { param: 'input' });
  }
  if (inputs.length > MAX_EMBEDDING_INPUTS) throw new HttpError(400, `input holds ${inputs.length} inputs; at most ${MAX_EMBEDDING_INPUTS} are accepted`, { param: 'input' });
  inputs.forEach((x, i) => {
    if (x === '') throw new HttpError(400, `input[${i}] is empty`, { param: 'input' });
    const bad = typeof x === 'string' ? -1 : x.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
    if (bad >= 0) throw new HttpError(400, `input[${i}][${bad}] is ${x[bad]}, not a token id of this model (0 to ${vocabSize - 1})`, { param: 'input' });
    checkPromptLength(typeof x === 'string' ? engine.tokenize(x).length : x.length, limits, 'input');
  });
  return { inputs, base64: format === 'base64' };
}

// OpenAI's base64 encoding: the float32 values' little-endian bytes.
function base64Floats(vector) {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString('base64');
}

function checkPromptLength(count, limits, param) {
  if (count > limits.maxPromptTokens) {
    throw new HttpError(400, `the prompt has ${count} tokens; this server accepts at most ${limits.maxPromptTokens}`, { param, code: 'context_length_exceeded' });
  }
}

function chatRequest(engine, body, gen, limits) {
  const { messages } = body;
  if (!Array.isArray(messages)) throw new HttpError(400, 'messages must be an array', { param: 'messages' });
  const measure = (candidate) => {
    const rendered = engine.chatPrompt(candidate, { tools: gen.tools });
    return { tokens: engine.tokenize(rendered.text, { addBos: rendered.addBos, special: true }).length };
  };
  // chat() gets 'error' either way: under 'truncate-oldest' the router has cut the conversation already,
  // against its own prompt cap.
  if (limits.contextOverflow === 'error') {
    // The engine needs room for at least one generated token.
    const maxPromptTokens = Math.min(limits.maxPromptTokens, limits.contextLength - 1);
    checkPromptLength(measure(messages).tokens, { maxPromptTokens }, 'messages');
    return (stream) => engine.chat(messages, { ...gen, stream, contextOverflow: 'error' });
  }
  const { contextLength } = limits;
  const promptLimit = Math.min(limits.maxPromptTokens, contextLength - replyReserve(contextLength, gen.maxTokens));
  let fitted;
  try {
    fitted = truncateOldest(messages, { measure, promptLimit });
  } catch (error) {
    if (error.code === 'ERR_CONTEXT_OVERFLOW') throw new HttpError(400, error.message, { param: 'messages', code: 'context_length_exceeded' });
    throw error;
  }
  const start = (stream) => engine.chat(fitted.messages, { ...gen, stream, contextOverflow: 'error' });
  start.truncatedMessages = fitted.truncatedMessages;
  return start;
}

// OpenAI's prompt forms: a string, token ids, or a batch of either; a batch here holds one prompt.
function promptOf(body, vocabSize) {
  let { prompt } = body;
  const isTokenIds = (p) => Array.isArray(p) && p.length > 0 && p.every((id) => typeof id === 'number');
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === 'string' || isTokenIds(prompt[0]))) prompt = prompt[0];
  if (typeof prompt === 'string') return prompt;
  if (!isTokenIds(prompt)) {
    const batch = Array.isArray(prompt) && prompt.length > 1 && prompt.every((p) => typeof p === 'string' || Array.isArray(p));
    const message = batch ? `prompt holds ${prompt.length} prompts; this server takes one prompt per request (use n for several completions)` : 'prompt must be a string, an array of token ids, or an array holding one of those';
    throw new HttpError(400, message, { param: 'prompt' });
  }
  const bad = prompt.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
  if (bad >= 0) throw new HttpError(400, `prompt[${bad}] is ${prompt[bad]}, not a token id of this model (0 to ${vocabSize - 1})`, { param: 'prompt' });
  return prompt;
}

function completionRequest(engine, body, gen, limits) {
  const prompt = promptOf(body, engine.info().vocabSize);
  // Token ids are the whole prompt, as given: no BOS is added to them.
  checkPromptLength(typeof prompt === 'string' ? engine.tokenize(prompt).length : prompt.length, limits, 'prompt');
  return (stream) => (stream ? engine.stream(prompt, gen) : engine.generate(prompt, gen));
}

// JSON has no -Infinity: a token the model rules out gets OpenAI's floor instead.
const LOGPROB_FLOOR = -9999;
const jsonLogprob = (logprob) => Math.max(logprob, LOGPROB_FLOOR);

// A choice's logprobs in chat's shape: { content: [{ token, logprob, bytes, top_logprobs }], refusal }.
function chatLogprobsBody(entries) {
  if (!entries) return null;
  const candidate = (e) => ({ token: e.text, logprob: jsonLogprob(e.logprob), bytes: e.bytes });
  return { content: entries.map((e) => ({ ...candidate(e), top_logprobs: e.top.map(candidate) })), refusal: null };
}

// A choice's logprobs in the completions (legacy) shape. `offset` is where the first token's text starts in
// the choice's text. As OpenAI's, each top_logprobs map holds the sampled token too.
function completionLogprobsBody(entries, offset = 0) {
  if (!entries) return null;
  const body = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const e of entries) {
    body.tokens.push(e.text);
    body.token_logprobs.push(jsonLogprob(e.logprob));
    const top = Object.fromEntries(e.top.map((t) => [t.text, jsonLogprob(t.logprob)]));
    if (!(e.text in top)) top[e.text] = jsonLogprob(e.logprob);
    body.top_logprobs.push(top);
    body.text_offset.push(offset);
    offset += e.text.length;
  }
  return body;
}

// A chat choice's message; one that calls tools has content null unless the model wrote text besides.
function chatMessage(choice) {
  const { message } = choice;
  if (!message.tool_calls) return { role: 'assistant', content: message.content };
  return { role: 'assistant', content: message.content || null, tool_calls: message.tool_calls };
}

function completionBody(result, { id, kind, model }) {
  const created = Math.floor(Date.now() / 1000);
  const choices = result.choices.map((c) =>
    kind === 'chat'
      ? { index: c.index, message: chatMessage(c), finish_reason: FINISH[c.finishReason], logprobs: chatLogprobsBody(c.logprobs) }
      : { index: c.index, text: c.text, finish_reason: FINISH[c.finishReason], logprobs: completionLogprobsBody(c.logprobs) },
  );
  return { id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model, choices, usage: usageOf(result) };
}

async function streamResponse(res, start, { id, kind, model, includeUsage, n, mayCallTools, stallTimeoutMs, abort, ended }) {
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
  const textOffsets = new Map(); // choice -> where its next token's text starts, for completions' text_offset
  const tokenLogprobs = (token) => {
    if (!token.logprobs) return null;
    if (kind === 'chat') return chatLogprobsBody(token.logprobs);
    const offset = textOffsets.get(token.index) ?? 0;
    textOffsets.set(token.index, offset + token.logprobs.reduce((sum, e) => sum + e.text.length, 0));
    return completionLogprobsBody(token.logprobs, offset);
  };
  const chunk = (index, text, finishReason = null, logprobs = null) =>
    kind === 'chat'
      ? { id, object, created, model, choices: [{ index, delta: finishReason ? {} : { content: text }, finish_reason: finishReason, logprobs }] }
      : { id, object, created, model, choices: [{ index, text, finish_reason: finishReason, logprobs }] };
  // A reply that may call tools streams as content only until a call may begin (lib/tools.js ReplyGate).
  const gates = new Map();
  const gate = (index) => {
    if (!gates.has(index)) gates.set(index, new ReplyGate());
    return gates.get(index);
  };
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
      // A token with logprobs is reported even while its text is held back (a partial character or stop string).
      const text = mayCallTools ? gate(token.index).push(token.text) : token.text;
      if (text || token.logprobs) send(chunk(token.index, text, null, tokenLogprobs(token)));
    }
  } catch (error) {
    if (headers) sendError(res, error); // mid-stream: an error event; else the caller sends a proper HTTP error
    throw error;
  }
  const result = await stream.result;
  const cutShort = ended(result);
  if (res.destroyed) return;
  if (cutShort) {
    if (!headers) throw cutShort; // nothing sent yet: a 504
    sendError(res, cutShort); // an error event in place of the finish chunks and [DONE]
    return;
  }
  openStream();
  if (mayCallTools) {
    for (const c of result.choices) sendHeldReply(c, gate(c.index).rest(c), (delta) => send({ id, object, created, model, choices: [{ index: c.index, delta, finish_reason: null, logprobs: null }] }));
  }
  for (const c of result.choices) send(chunk(c.index, '', FINISH[c.finishReason]));
  if (includeUsage) send({ id, object, created, model, choices: [], usage: usageOf(result) });
  res.write('data: [DONE]\n\n');
  res.end();
}

// The held part of a chat reply as deltas: the rest of its content, then each tool call as OpenAI streams them,
// a first delta with the call's index, id, type and name, then its arguments' text (clients concatenate them).
function sendHeldReply(choice, content, sendDelta) {
  const { tool_calls: calls = [] } = choice.message;
  if (content) sendDelta({ content });
  calls.forEach((call, index) => {
    sendDelta({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] });
    sendDelta({ tool_calls: [{ index, function: { arguments: call.function.arguments } }] });
  });
}

module.exports = { createRouter, HttpError, ROUTER_KEYS };
