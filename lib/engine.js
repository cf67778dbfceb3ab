'use strict';

const binding = require('./native');
const { ChatFormatter, checkMessages } = require('./chat');
const { replyReserve, truncateOldest } = require('./overflow');
const { DEFAULT_SAMPLING } = require('./sampling');
const { checkTools, checkToolChoice, checkToolCallFormat, toolCallGrammar, parseReply } = require('./tools');
const { jsonSchemaToGrammar } = require('./grammar');
const { PagedlmError, fromNative } = require('./errors');
const hub = require('./hub');
const { DEFAULT_SPECULATIVE_TOKENS, loadOptions, inspectOptions, generateOptions, embedOptions, checkTokenIds, checkObject, checkBoolean, checkKeys, int, kvTypes, checkContextOverflow, GENERATE_KEYS, CHAT_KEYS } = require('./options');

const kCreate = Symbol('create');

/**
 * A loaded model and the engine thread serving it. Any number of generate() calls may run at once;
 * tokens arrive through onToken as the engine produces them, never blocking the event loop.
 */
class Engine {
  #native = null;
  #requests = new Map(); // id -> Request: what a generate() call is waiting for
  #nextId = 0;
  #closing = null;
  #info = null; // cached: the model does not change
  #chat = null;
  #speculative = undefined; // Engine.load's speculative option: what a request that does not say uses
  #draftTokens = DEFAULT_SPECULATIVE_TOKENS; // Engine.load's draft.tokens: what a 'draft' request proposes per step

  constructor(token) {
    if (token !== kCreate) throw new TypeError('use `await Engine.load(path, options)` to create an Engine');
    /** The KV cache: its counters and the calls that steer it. */
    this.cache = Object.freeze({
      /** Pool and prefix-cache counters: blocks free / in use / cached, hits, hit rate, evictions. */
      stats: () => this.#open().cacheStats(),
      /** Forgets every cached prefix block that no request is using; resolves to how many. */
      clear: () => this.#cacheCall('clearCache'),
      /** Keeps a prompt's KV resident through eviction (a system prompt); resolves to { id, tokens }. */
      pin: (prompt, options) => this.#pin(prompt, options),
      /** Releases a pin; resolves to true when it was held. */
      unpin: (pin) => this.#unpin(pin),
      /** Writes every cached prefix block to a file; resolves to how many. */
      save: (path) => this.#cacheFile('saveCache', path),
      /** Adds the blocks of a file saved from the same model and K/V types; resolves to how many were new. */
      load: (path) => this.#cacheFile('loadCache', path),
    });
  }

  /**
   * Loads a GGUF model on a worker thread. `modelPath` is a file, or an hf: spec (docs/models.md) whose files are
   * downloaded into the cache first. onProgress(fraction, { phase, bytes, totalBytes, bytesPerSecond }) runs
   * from 0 to 1 for the download (phase 'download', for a spec resolved against the hub), then again for the load.
   */
  static async load(modelPath, options = {}) {
    if (typeof modelPath !== 'string' || modelPath.length === 0) throw new TypeError('modelPath must be a non-empty string');
    const { onProgress, speculative, ...nativeOptions } = loadOptions(options);
    const file = await localModel(modelPath, options.hub, onProgress);
    if (nativeOptions.draftModel) nativeOptions.draftModel = await localModel(nativeOptions.draftModel, options.hub);
    const engine = new Engine(kCreate);
    engine.#speculative = speculative;
    engine.#draftTokens = nativeOptions.draftTokens ?? DEFAULT_SPECULATIVE_TOKENS;
    const loadProgress = onProgress && ((fraction) => onProgress(fraction, { phase: 'load' }));
    try {
      engine.#native = await binding.load(file, nativeOptions, (events) => engine.#dispatch(events), loadProgress);
    } catch (error) {
      throw fromNative(error);
    }
    return engine;
  }

  /**
   * Reads a model's metadata (not its weights) and plans its memory: architecture, parameters, weight
   * bytes by type, KV bytes per token for each kvCache.dtype, and the context that fits. Options:
   * kvCache: { dtype, kType, vType, blockSize }, sequences (maxContextLength is per sequence, for this many at once),
   * memory (bytes to plan with; default: the memory available now), hub (for an hf: spec, which is downloaded first).
   */
  static async inspect(modelPath, options = {}) {
    if (typeof modelPath !== 'string' || modelPath.length === 0) throw new TypeError('modelPath must be a non-empty string');
    const nativeOptions = inspectOptions(options);
    const file = await localModel(modelPath, options.hub);
    try {
      return await binding.inspect(file, nativeOptions);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /**
   * Bytes a KV pool needs for `sequences` sequences of `contextLength` tokens each:
   * 2 x layers x kvHeads x headDim x bytes per element (+ a 4-byte scale per token and head for int8/fp8),
   * per token, with each sequence rounded up to whole blocks.
   * `model` is an Engine or its info(); `config` is { layers, kvHeads, headDim }.
   */
  static estimateKvBytes(options) {
    return estimateKvBytes(options);
  }

  /**
   * Generates a completion of `prompt` (text, or token ids). Resolves to
   * { text, tokens, finishReason: 'stop' | 'length' | 'abort', usage, timings }, plus `logprobs` (one entry per
   * token) with the logprobs option.
   */
  generate(prompt, options = {}) {
    return new Promise((resolve, reject) => {
      const { params, onToken, signal, addBos, special } = generateOptions(options);
      const promptIds = this.#promptIds(prompt, addBos, special);
      if (this.#closing) throw closedError();
      const n = params.n ?? 1;
      if (signal?.aborted) {
        const nothing = { text: '', tokens: [], finishReason: 'abort', promptTokens: promptIds.length };
        resolve(result(Array.from({ length: n }, () => nothing), params));
        return;
      }
      this.#submit(promptIds, params, { resolve: (ends) => resolve(result(ends, params)), reject, onToken, signal, choices: n });
    });
  }

  /**
   * Embeddings: each input's hidden states (the output of the model's final norm) pooled as the model's
   * `pooling_type` says (mean, cls or last token; info().embeddingPooling) or as `pooling` overrides it,
   * L2-normalized unless `normalize: false`. `input`: a string, a token-id array, or an array of them; all
   * are submitted at once, so they share the engine's steps with each other and with generation. Text gets
   * BOS as generate() adds it; token ids are used as given. Resolves to
   * { embeddings: Float32Array[] (in input order), promptTokens, model, pooling }. An aborted `signal`
   * rejects with its reason.
   */
  embed(input, options = {}) {
    return new Promise((resolve, reject) => {
      const { normalize, pooling, signal } = embedOptions(options);
      const inputs = this.#embeddingInputs(input);
      if (this.#closing) throw closedError();
      const info = this.info();
      const done = { embeddings: [], promptTokens: 0, model: info.name, pooling: pooling ?? info.embeddingPooling };
      if (signal?.aborted) throw abortReason(signal);
      if (inputs.length === 0) {
        resolve(done);
        return;
      }
      const ids = [];
      let pending = inputs.length;
      let failed = false;
      const fail = (error) => {
        if (!failed) for (const id of ids) this.#native.cancel(id);
        failed = true;
        reject(error);
      };
      inputs.forEach((tokens, index) => {
        if (failed) return;
        const finished = ([end]) => {
          if (end.finishReason === 'abort') return fail(abortReason(signal));
          done.embeddings[index] = end.embedding;
          done.promptTokens += end.promptTokens;
          if (--pending === 0) resolve(done);
        };
        try {
          ids.push(this.#submit(tokens, { embed: { normalize, pooling } }, { resolve: finished, reject: fail, signal }));
        } catch (error) {
          fail(error); // the inputs submitted before it are cancelled
        }
      });
    });
  }

  // embed()'s input -> one token-id array per input, each within the context.
  #embeddingInputs(input) {
    const one = typeof input === 'string' || input instanceof Int32Array || (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'number'));
    const inputs = one ? [input] : input;
    if (!Array.isArray(inputs)) throw new TypeError(`input must be a string, an array of token ids, or an array of those, got ${describeValue(input)}`);
    const { contextLength } = this.info();
    return inputs.map((item, index) => {
      if (typeof item !== 'string' && !Array.isArray(item) && !(item instanceof Int32Array)) {
        throw new TypeError(`input[${index}] must be a string or an array of token ids, got ${describeValue(item)}`);
      }
      const tokens = this.#promptIds(item, true, false);
      if (tokens.length === 0) throw new RangeError(`input[${index}] is empty: pass text or at least one token id`);
      if (tokens.length > contextLength) {
        throw new RangeError(`input[${index}] has ${tokens.length} tokens but the context holds ${contextLength}: shorten it or load with a larger contextLength`);
      }
      return tokens;
    });
  }

  /**
   * Chat: renders `messages` ([{ role: 'system' | 'user' | 'assistant' | 'tool', content }]) with the model's chat
   * template (a ChatML fallback when it has none) and generates the assistant's reply. Takes generate()'s
   * options, plus `template` (a Jinja template overriding the model's), `stream: true` to get an async
   * iterator like stream() (whose `result` resolves to what chat() would), and tool calling: `tools`
   * (OpenAI's [{ type: 'function', function: { name, description, parameters } }]), `toolChoice` ('auto',
   * 'none', 'required' or { type: 'function', function: { name } }), `parallelToolCalls` (default true) and
   * `toolCallFormat` (how the model writes calls: 'llama3' | 'hermes' | 'mistral' | 'generic'; default: read
   * from the template). Resolves to generate()'s result plus `message: { role: 'assistant', content }`; with
   * tools, also `toolCalls` ([{ id, type: 'function', function: { name, arguments: JSON text }, arguments:
   * object }], empty when the reply calls none), and when it calls some, finishReason 'tool_calls' and
   * `message.tool_calls` (OpenAI's shape, ready to append to `messages`). Each of `choices` carries the same.
   * `contextOverflow` says what a conversation longer than the context does: 'truncate-oldest' (default) drops
   * its oldest turns, keeping the leading system messages (lib/overflow.js), 'error' rejects with
   * ERR_CONTEXT_OVERFLOW; the result's `truncatedMessages` (also on the stream) counts the messages dropped.
   */
  chat(messages, options = {}) {
    const o = checkObject(options, 'options');
    const { template, stream, tools, toolChoice, parallelToolCalls, toolCallFormat, contextOverflow, ...rest } = o;
    let prompt;
    let toolUse;
    try {
      checkKeys(o, CHAT_KEYS, 'chat() options');
      const policy = checkContextOverflow(contextOverflow) ?? 'truncate-oldest';
      const maxTokens = int(rest.maxTokens ?? DEFAULT_SAMPLING.maxTokens, 'maxTokens');
      toolUse = this.#toolUse({ tools, toolChoice, parallelToolCalls, toolCallFormat }, template);
      prompt = this.#fitChat(messages, { template, toolUse, policy, maxTokens });
      const constraint = ['grammar', 'jsonSchema', 'json'].find((key) => rest[key] !== undefined);
      if (toolUse.grammar && constraint) throw new TypeError(`${constraint} cannot be combined with toolChoice "required" or a named function, which constrain the reply to tool calls`);
    } catch (error) {
      return stream ? failedStream(error) : Promise.reject(error);
    }
    const { rendered, ids } = prompt.measured;
    const stop = [...(typeof rest.stop === 'string' ? [rest.stop] : rest.stop ?? []), ...rendered.stop];
    // The prompt goes as the token ids it was measured with: BOS and special tokens are in them already.
    const { addBos, special, ...generation } = rest; // eslint-disable-line no-unused-vars
    const chatOptions = { ...generation, stop: stop.length ? stop : undefined };
    if (toolUse.grammar) chatOptions.grammar = toolUse.grammar;
    const { truncatedMessages } = prompt;
    const finish = (r) => ({ ...chatResult(r, toolUse), truncatedMessages });
    if (!stream) return this.generate(ids, chatOptions).then(finish);
    const tokens = this.stream(ids, chatOptions);
    tokens.truncatedMessages = truncatedMessages;
    tokens.result = tokens.result.then(finish);
    tokens.result.catch(() => {});
    return tokens;
  }

  // chat()'s messages -> the prompt to send under the contextOverflow policy:
  // { measured: { rendered, ids, tokens }, truncatedMessages }.
  #fitChat(messages, { template, toolUse, policy, maxTokens }) {
    checkMessages(messages); // here, so that an error names the message's place in the whole conversation
    this.#chat ??= new ChatFormatter(this.info());
    const measure = (candidate) => {
      const rendered = this.#chat.render(candidate, { template, tools: toolUse.promptTools });
      // An array: the addon's Int32Array is another realm's under a vm context (Jest), which generate() refuses.
      const ids = Array.from(this.#open().tokenize(rendered.text + toolUse.prefix, rendered.addBos, true));
      return { rendered, ids, tokens: ids.length };
    };
    const { contextLength } = this.info();
    if (policy === 'truncate-oldest') {
      return truncateOldest(messages, { measure, promptLimit: contextLength - replyReserve(contextLength, maxTokens) });
    }
    const measured = measure(messages);
    if (measured.tokens >= contextLength) {
      throw new PagedlmError(
        `the conversation has ${measured.tokens} tokens but the context holds ${contextLength} (prompt plus at least one generated token): pass contextOverflow: 'truncate-oldest' to drop its oldest turns, or load with a larger contextLength`,
        'ERR_CONTEXT_OVERFLOW',
      );
    }
    return { measured, truncatedMessages: 0 };
  }

  // chat()'s tool options -> what the prompt, the grammar and the reply's parsing need.
  #toolUse({ tools, toolChoice, parallelToolCalls, toolCallFormat }, template) {
    const checked = checkTools(tools);
    const choice = checkToolChoice(toolChoice, checked, 'toolChoice');
    const parallel = checkBoolean(parallelToolCalls, 'parallelToolCalls') ?? true;
    const format = checkToolCallFormat(toolCallFormat) ?? this.toolCallFormat(template);
    // 'none' leaves the tools out of the prompt: a model shown tools may call them whatever it is told.
    if (choice.mode === 'none') return { promptTools: undefined, prefix: '', parse: false };
    const toolUse = { promptTools: checked, prefix: '', parse: true, tools: checked, parallel, format };
    if (choice.mode === 'required') Object.assign(toolUse, toolCallGrammar({ format, tools: checked, choice, parallel, schemaToGrammar: jsonSchemaToGrammar }));
    return toolUse;
  }

  /**
   * How this model writes tool calls, read from its chat template (or `template`): 'hermes' (Qwen 2.5/3,
   * Hermes: <tool_call>), 'mistral' ([TOOL_CALLS]), 'llama3' (Llama 3.1/3.2 JSON), else 'generic'.
   */
  toolCallFormat(template) {
    if (template !== undefined && typeof template !== 'string') throw new TypeError('template must be a string');
    this.#chat ??= new ChatFormatter(this.info());
    return binding.toolCallFamily(this.#chat.source(template));
  }

  /**
   * The prompt chat() would send for all of `messages` (before contextOverflow drops any): { text, addBos,
   * stop }. `tools` reach the template as chat()'s do.
   */
  chatPrompt(messages, options = {}) {
    const { template, tools } = checkKeys(checkObject(options, 'options'), ['template', 'tools'], 'chatPrompt() options');
    if (template !== undefined && typeof template !== 'string') throw new TypeError('template must be a string');
    this.#chat ??= new ChatFormatter(this.info());
    return this.#chat.render(messages, { template, tools: checkTools(tools) });
  }

  /**
   * Like generate(), as an async iterator of tokens ({ id, text, index }, plus `logprobs` with that option). Leaving the loop early (break,
   * return, throw) aborts the request. `stream.result` resolves to what generate() would.
   */
  stream(prompt, options = {}) {
    const { signal, onToken, ...rest } = checkKeys(checkObject(options, 'options'), GENERATE_KEYS, 'stream() options');
    const controller = new AbortController();
    if (signal?.aborted) controller.abort();
    else signal?.addEventListener?.('abort', () => controller.abort(), { once: true });
    const queue = [];
    let wake = null;
    let finished = false;
    let failure = null;
    const notify = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const result = this.generate(prompt, {
      ...rest,
      signal: controller.signal,
      onToken: (token) => {
        queue.push(token);
        notify();
        onToken?.(token);
      },
    }).then(
      (value) => {
        finished = true;
        notify();
        return value;
      },
      (error) => {
        failure = error;
        finished = true;
        notify();
        throw error;
      },
    );
    result.catch(() => {}); // the iterator reports the error; nobody need await `result`
    return {
      result,
      async next() {
        while (queue.length === 0 && !finished) await new Promise((resolve) => (wake = resolve));
        if (queue.length > 0) return { value: queue.shift(), done: false };
        if (failure) throw failure;
        return { value: undefined, done: true };
      },
      async return() {
        controller.abort();
        await result.catch(() => {});
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  // A request's speculative setting: its own, else the load-time default (an embedding generates nothing), with
  // the tokens per step it did not name: a draft model's draft.tokens, else the default.
  #speculativeFor(params) {
    const chosen = params.speculative ?? (params.embed ? undefined : this.#speculative);
    if (!chosen || chosen.tokens !== undefined) return chosen;
    return { ...chosen, tokens: chosen.proposer === 'draft' ? this.#draftTokens : DEFAULT_SPECULATIVE_TOKENS };
  }

  // Hands a request to the engine thread; `request` receives its events.
  #submit(promptIds, params, request) {
    const id = ++this.#nextId;
    try {
      // Token events only for a request that streams them: the others' steps do not wake the event loop.
      // A request that does not say takes the load-time speculative default (an embedding generates nothing).
      const speculative = this.#speculativeFor(params);
      this.#native.submit(id, promptIds, { ...params, speculative, streamTokens: typeof request.onToken === 'function' });
    } catch (error) {
      throw fromNative(error);
    }
    const { signal } = request;
    request.settled = false;
    request.detach = null;
    request.choices ??= 1;
    request.ends = []; // the finished event of each completion, by index
    if (signal) {
      const onAbort = () => this.#native.cancel(id);
      signal.addEventListener('abort', onAbort, { once: true });
      request.detach = () => signal.removeEventListener('abort', onAbort);
    }
    if (this.#requests.size === 0) this.#native.ref(); // keep the process alive while work is in flight
    this.#requests.set(id, request);
    return id;
  }

  // Computes the prompt's KV (or finds it cached) and keeps its full blocks resident until unpinned.
  #pin(prompt, options = {}) {
    return new Promise((resolve, reject) => {
      const o = checkKeys(checkObject(options, 'options'), ['cacheSalt', 'addBos', 'special'], 'cache.pin() options');
      const { params, addBos, special } = generateOptions({ cacheSalt: o.cacheSalt, addBos: o.addBos, special: o.special });
      const promptIds = this.#promptIds(prompt, addBos, special);
      if (this.#closing) throw closedError();
      const pinParams = { ...params, maxTokens: 1, temperature: 0, pin: true };
      const id = this.#submit(promptIds, pinParams, { resolve: ([end]) => resolve({ id, tokens: end.pinnedTokens }), reject });
    });
  }

  // A native cache call that waits for the engine thread: a Promise with pagedlm's errors.
  #cacheCall(call, ...args) {
    if (this.#closing) return Promise.reject(closedError());
    return this.#native[call](...args).catch((e) => Promise.reject(fromNative(e)));
  }

  #cacheFile(call, path) {
    if (typeof path !== 'string' || path.length === 0) return Promise.reject(new TypeError('path must be a non-empty string'));
    return this.#cacheCall(call, path);
  }

  #unpin(pin) {
    const id = typeof pin === 'object' && pin !== null ? pin.id : pin;
    if (!Number.isInteger(id)) return Promise.reject(new TypeError('unpin() takes what pin() resolved to, or its id'));
    return this.#cacheCall('unpin', id).then((blocks) => blocks > 0);
  }

  /** Text -> token ids. `addBos` (default true) follows the model's add_bos_token setting. */
  tokenize(text, options = {}) {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    const o = checkKeys(checkObject(options, 'options'), ['addBos', 'special'], 'tokenize() options');
    return Array.from(this.#open().tokenize(text, checkBoolean(o.addBos, 'addBos') ?? true, checkBoolean(o.special, 'special') ?? false));
  }

  /** Token ids -> text (control tokens render as nothing). */
  detokenize(ids) {
    const checked = checkTokenIds(ids, 'ids');
    const native = this.#open();
    const { vocabSize } = this.#info ?? (this.#info = native.info());
    const outside = checked.find((id) => id >= vocabSize);
    if (outside !== undefined) throw new RangeError(`token id ${outside} is outside the vocabulary [0, ${vocabSize})`);
    return native.detokenize(checked);
  }

  /** Model and engine facts: architecture, parameters, context, KV bytes per token, backend... */
  info() {
    const native = this.#open();
    return { ...(this.#info ?? (this.#info = native.info())) };
  }

  /** Scheduler counters: running, waiting, preemptions, steps, tokens generated and computed, tokens/s. */
  stats() {
    return this.#open().stats();
  }

  /** Rejects every request in flight with ERR_CLOSED, frees the KV pool and joins the engine's threads. */
  close() {
    if (!this.#closing) {
      this.#closing = this.#native.close().then(() => {
        for (const [id, request] of this.#requests) this.#settle(id, request, () => request.reject(new PagedlmError('the engine was closed while this request was in flight', 'ERR_CLOSED')));
      });
    }
    return this.#closing;
  }

  get closed() {
    return this.#closing !== null;
  }

  #open() {
    if (this.#closing) throw closedError();
    return this.#native;
  }

  #promptIds(prompt, addBos, special) {
    if (typeof prompt === 'string') return this.#open().tokenize(prompt, addBos, special);
    if (Array.isArray(prompt) || prompt instanceof Int32Array) return checkTokenIds(prompt, 'prompt');
    throw new TypeError(`prompt must be a string or an array of token ids, got ${prompt === null ? 'null' : typeof prompt}`);
  }

  // Called once per engine step with that step's events, in order.
  #dispatch(events) {
    for (const event of events) {
      const request = this.#requests.get(event.id);
      if (!request) continue;
      if (event.kind === 'token') {
        if (!request.settled && request.onToken) this.#callOnToken(event, request);
      } else if (event.kind === 'finished') {
        request.ends[event.choice] = event;
        if (request.ends.filter(Boolean).length === request.choices) this.#settle(event.id, request, () => request.resolve(request.ends));
      } else {
        // One completion failed: the request rejects, so its other completions stop too.
        if (request.choices > 1) this.#native.cancel(event.id);
        this.#settle(event.id, request, () => request.reject(new PagedlmError(event.message, event.code)));
      }
    }
  }

  // A throwing onToken must not take the process down: the request is aborted and rejects with the error.
  #callOnToken(event, request) {
    try {
      const token = { id: event.token, text: event.text, index: event.choice };
      if (event.logprobs) token.logprobs = event.logprobs;
      request.onToken(token);
    } catch (error) {
      request.settled = true;
      request.detach?.();
      this.#native.cancel(event.id);
      request.reject(error);
    }
  }

  #settle(id, request, settle) {
    this.#requests.delete(id);
    if (this.#requests.size === 0 && !this.#closing) this.#native.unref();
    if (request.settled) return;
    request.settled = true;
    request.detach?.();
    settle();
  }
}

// One block piece's bytes (blockSize rows of one KV head) of K or V in `type`, its scales included: the
// formula of native/kv/kv_layout.h. int4 K keeps an f16 scale per channel of the piece, int4 V an f16 scale
// per group of INT4_VALUE_GROUP values of each row; int8 and fp8 a float per row.
const KV_ELEMENT_BYTES = { f32: 4, f16: 2, bf16: 2, int8: 1, fp8: 1 };
const INT4_VALUE_GROUP = 32;

function kvPieceBytes(type, isKey, headDim, blockSize) {
  if (type === 'int4') {
    const rows = blockSize * Math.ceil(headDim / 2);
    return rows + 2 * (isKey ? headDim : blockSize * Math.ceil(headDim / INT4_VALUE_GROUP));
  }
  const scale = type === 'int8' || type === 'fp8' ? 4 : 0;
  return blockSize * (headDim * KV_ELEMENT_BYTES[type] + scale);
}

function estimateKvBytes(options) {
  const keys = ['model', 'config', 'contextLength', 'sequences', 'dtype', 'kType', 'vType', 'blockSize'];
  const o = checkKeys(checkObject(options, 'options'), keys, 'estimateKvBytes() options');
  const source = o.model instanceof Engine ? o.model.info() : o.model ?? o.config;
  const shape = checkObject(source, 'model or config');
  for (const key of ['layers', 'kvHeads', 'headDim']) {
    if (!Number.isInteger(shape[key]) || shape[key] <= 0) throw new TypeError(`${o.model ? 'model' : 'config'}.${key} must be a positive integer`);
  }
  const { kvKType = 'f16', kvVType = 'f16' } = kvTypes(o, '');
  const blockSize = o.blockSize ?? 16;
  const contextLength = o.contextLength ?? shape.contextLength;
  const sequences = o.sequences ?? 1;
  for (const [name, value] of [['contextLength', contextLength], ['sequences', sequences], ['blockSize', blockSize]]) {
    if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  if (shape.latentAttention !== undefined && typeof shape.latentAttention !== 'boolean') {
    throw new TypeError(`${o.model ? 'model' : 'config'}.latentAttention must be a boolean`);
  }
  if (shape.latentAttention && o.vType !== undefined && o.vType !== kvKType) {
    throw new TypeError(`a latent-attention model keeps V inside the K row: vType ('${o.vType}') must be kType's ('${kvKType}') or left out`);
  }
  // Latent attention keeps K rows only (V is the latent inside each K row).
  const valuePiece = shape.latentAttention ? 0 : kvPieceBytes(kvVType, false, shape.headDim, blockSize);
  const bytesPerBlock = shape.layers * shape.kvHeads * (kvPieceBytes(kvKType, true, shape.headDim, blockSize) + valuePiece);
  return bytesPerBlock * Math.ceil(contextLength / blockSize) * sequences;
}

// A stream() that fails at once (for a chat whose messages cannot be rendered).
function failedStream(error) {
  const result = Promise.reject(error);
  result.catch(() => {});
  return {
    result,
    next: () => Promise.reject(error),
    return: async () => ({ value: undefined, done: true }),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

// A chat's generate() result -> chat()'s: each choice's reply as a message, split into content and tool
// calls when tools were offered.
function chatResult(r, toolUse) {
  const choices = r.choices.map((c) => {
    if (!toolUse.parse) return { ...c, message: { role: 'assistant', content: c.text } };
    const { content, toolCalls } = parseReply(toolUse.prefix + c.text, { ...toolUse, parse: binding.parseToolCalls });
    if (toolCalls.length === 0) return { ...c, toolCalls, message: { role: 'assistant', content: c.text } };
    const openaiCalls = toolCalls.map(({ id, type, function: fn }) => ({ id, type, function: fn }));
    return { ...c, finishReason: 'tool_calls', toolCalls, message: { role: 'assistant', content, tool_calls: openaiCalls } };
  });
  const [first] = choices;
  const chat = { ...r, finishReason: first.finishReason, choices, message: first.message };
  if (first.toolCalls) chat.toolCalls = first.toolCalls;
  return chat;
}

function describeValue(value) {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'an array' : typeof value;
}

// What an aborted embed() rejects with: the signal's reason, as fetch() does.
function abortReason(signal) {
  return signal?.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function closedError() {
  return new PagedlmError('the engine is closed', 'ERR_CLOSED');
}

// The finished events of a request's completions -> what generate() resolves to. With the logprobs option
// each choice carries its tokens' logprobs (none when it generated nothing); with jsonSchema or json, the
// parsed value of a completion the grammar finished.
function result(ends, params) {
  const withLogprobs = params.logprobs !== undefined;
  const withJson = params.jsonSchema !== undefined || params.json === true;
  const choices = ends.map((e, index) => {
    const choice = { index, text: e.text, tokens: Array.from(e.tokens), finishReason: e.finishReason };
    if (withLogprobs) choice.logprobs = e.logprobs ?? [];
    if (withJson && e.finishReason === 'stop') {
      const value = parseJson(e.text);  // a stop string or stop token may have cut it short
      if (value !== undefined) choice.json = value;
    }
    return choice;
  });
  const first = ends[0];
  return {
    text: choices[0].text,
    tokens: choices[0].tokens,
    ...(withLogprobs && { logprobs: choices[0].logprobs }),
    ...('json' in choices[0] && { json: choices[0].json }),
    finishReason: choices[0].finishReason,
    choices,
    usage: { promptTokens: first.promptTokens, completionTokens: choices.reduce((sum, c) => sum + c.tokens.length, 0) },
    timings: { ttftMs: first.ttftMs ?? 0, tokensPerSecond: first.tokensPerSecond ?? 0 },
    ...(first.speculation && { speculation: speculationSummary(ends.map((e) => e.speculation)) }),
  };
}

// The addon's speculation counters of a request's completions -> { proposed, accepted, acceptanceRate,
// tokensPerStep } over all of them (tokensPerStep: tokens per step that verified a proposal).
function speculationSummary(counters) {
  const sum = (key) => counters.reduce((total, c) => total + (c?.[key] ?? 0), 0);
  const proposed = sum('proposed');
  const accepted = sum('accepted');
  const steps = sum('verifySteps');
  return { proposed, accepted, acceptanceRate: proposed > 0 ? accepted / proposed : 0, tokensPerStep: steps > 0 ? sum('generatedTokens') / steps : 0 };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// An hf: spec -> the local file it downloads to (a path is itself). The download reports to onProgress as the
// first of load()'s two phases; hub.onProgress, when given, hears the same bytes.
async function localModel(modelPath, hubOptions, onProgress) {
  if (!hub.isHubSpec(modelPath)) return modelPath;
  const options = hubOptions === undefined ? {} : { ...checkObject(hubOptions, 'hub') };
  const hubProgress = options.onProgress;
  if (onProgress || hubProgress) {
    options.onProgress = (p) => {
      hubProgress?.(p);
      onProgress?.(p.totalBytes > 0 ? p.bytes / p.totalBytes : 1, { phase: 'download', ...p });
    };
  }
  return (await hub.resolveModel(modelPath, options)).path;
}

module.exports = { Engine };
