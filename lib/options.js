'use strict';

// Argument checks for the public API: wrong types throw TypeError, values out of range RangeError,
// each naming the option and what it accepts.

const { DEFAULT_SAMPLING } = require('./sampling');

const KV_DTYPES = ['f32', 'f16', 'bf16', 'int8', 'fp8', 'int4'];

const LOAD_KEYS = ['device', 'gpu', 'threads', 'contextLength', 'kvCache', 'maxBatchTokens', 'prefault', 'mmap', 'onProgress', 'hub', 'draft', 'speculative'];
const DRAFT_KEYS = ['model', 'tokens'];
// The most tokens a proposer guesses per step (native/speculative/proposer.h kMaxProposedTokens).
const MAX_DRAFT_TOKENS = 16;
const KV_CACHE_KEYS = ['dtype', 'kType', 'vType', 'blockSize', 'blocks', 'memory', 'gpuMemoryFraction', 'offload'];
const OFFLOAD_KEYS = ['memory', 'disk', 'path'];
const INSPECT_KEYS = ['device', 'gpu', 'kvCache', 'sequences', 'memory', 'hub'];
const INSPECT_KV_CACHE_KEYS = ['dtype', 'kType', 'vType', 'blockSize'];
const GENERATE_KEYS = [
  'n', 'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'frequencyPenalty', 'presencePenalty',
  'penaltyLastN', 'seed', 'stop', 'stopTokens', 'ignoreEos', 'cacheSalt', 'addBos', 'special', 'onToken', 'signal',
  'logprobs', 'grammar', 'jsonSchema', 'json', 'speculative',
];
// The most alternatives a token's logprobs list (OpenAI's top_logprobs bound).
const MAX_LOGPROBS = 20;
const EMBED_KEYS = ['normalize', 'pooling', 'signal'];
const POOLINGS = ['mean', 'cls', 'last'];
const CHAT_KEYS = [...GENERATE_KEYS, 'template', 'stream', 'tools', 'toolChoice', 'parallelToolCalls', 'toolCallFormat', 'contextOverflow'];

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function checkObject(value, name) {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${name} must be an object, got ${describe(value)}`);
  }
  return value;
}

function checkNumber(value, name, { min = -Infinity, max = Infinity, integer = false, exclusiveMin = false } = {}) {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  if (integer && !Number.isInteger(value)) throw new RangeError(`${name} must be an integer, got ${value}`);
  if (value < min || value > max || (exclusiveMin && value === min)) {
    const low = exclusiveMin ? `greater than ${min}` : `at least ${min}`;
    throw new RangeError(`${name} must be ${low}${max !== Infinity ? ` and at most ${max}` : ''}, got ${value}`);
  }
  return value;
}

// Edits (insertions, deletions, substitutions) turning `a` into `b`.
function editDistance(a, b) {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

// Case and separators are ignored, so `max_tokens` and `MaxTokens` point at `maxTokens`.
const normalized = (key) => key.toLowerCase().replace(/[_-]/g, '');

/** The known key closest to `key`, or undefined when none is near enough to be what was meant. */
function closestKey(key, known) {
  let best;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(normalized(key), normalized(candidate));
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Throws a TypeError for the first key of `object` that is not in `known`, naming the closest known one. */
function checkKeys(object, known, name) {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const closest = closestKey(key, known);
    const hint = closest ? `did you mean '${closest}'?` : `known options: ${known.join(', ')}`;
    throw new TypeError(`unknown option '${key}' in ${name}: ${hint}`);
  }
  return object;
}

const int = (value, name, min = 1, max = 2 ** 31 - 1) => checkNumber(value, name, { min, max, integer: true });

function checkBoolean(value, name) {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}

function checkString(value, name) {
  if (value !== undefined && typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${describe(value)}`);
  return value;
}

function checkFunction(value, name) {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${describe(value)}`);
  return value;
}

function checkSignal(value) {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || typeof value.aborted !== 'boolean' || typeof value.addEventListener !== 'function') {
    throw new TypeError(`signal must be an AbortSignal, got ${describe(value)}`);
  }
  return value;
}

function checkTokenIds(value, name) {
  const ids = value instanceof Int32Array ? Array.from(value) : value;
  if (!Array.isArray(ids)) throw new TypeError(`${name} must be an array of token ids, got ${describe(value)}`);
  for (const id of ids) {
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new TypeError(`${name} must hold integer token ids, got ${describe(id)}`);
    if (id < 0 || id > 2 ** 31 - 1) throw new RangeError(`${name} holds ${id}, which is not a token id`);
  }
  return ids;
}

const DEVICES = ['auto', 'cuda', 'cpu'];

// Speculative decoding's proposers, the most tokens one step may propose, and the default.
const PROPOSERS = ['ngram', 'draft'];
const MAX_SPECULATIVE_TOKENS = MAX_DRAFT_TOKENS;
const DEFAULT_SPECULATIVE_TOKENS = 4;
const SPECULATIVE_KEYS = ['proposer', 'tokens'];

/**
 * The speculative option: false | 'ngram' | 'draft' | { proposer, tokens } -> { proposer, tokens } for the addon
 * (proposer 'none' for false); undefined when not given. `tokens` stays undefined when not given: the engine
 * fills it in (a 'draft' request takes Engine.load's draft.tokens).
 */
function speculativeOption(value, name = 'speculative') {
  if (value === undefined) return undefined;
  if (value === false) return { proposer: 'none', tokens: DEFAULT_SPECULATIVE_TOKENS };
  const checkProposer = (proposer, what) => {
    if (!PROPOSERS.includes(proposer)) {
      const shown = typeof proposer === 'string' ? JSON.stringify(proposer) : proposer === undefined ? 'nothing' : describe(proposer);
      throw new (typeof proposer === 'string' ? RangeError : TypeError)(`${what} must be one of ${PROPOSERS.map((p) => `'${p}'`).join(', ')}, got ${shown}`);
    }
    return proposer;
  };
  if (typeof value === 'string') return { proposer: checkProposer(value, name), tokens: undefined };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${name} must be false, 'ngram', 'draft' or { proposer, tokens }, got ${describe(value)}`);
  }
  checkKeys(value, SPECULATIVE_KEYS, name);
  return {
    proposer: checkProposer(value.proposer, `${name}.proposer`),
    tokens: int(value.tokens, `${name}.tokens`, 1, MAX_SPECULATIVE_TOKENS),
  };
}

/** Engine.load's `draft` option -> { draftModel, draftTokens }, or {} when there is none. */
function draftOptions(value) {
  if (value === undefined) return {};
  const draft = checkKeys(checkObject(value, 'draft'), DRAFT_KEYS, 'draft');
  if (draft.model === undefined) throw new TypeError("draft needs model: the draft model's path");
  if (typeof draft.model !== 'string' || draft.model.length === 0) {
    throw new TypeError(`draft.model must be the draft model's path (a non-empty string), got ${describe(draft.model)}`);
  }
  return { draftModel: draft.model, draftTokens: int(draft.tokens, 'draft.tokens', 1, MAX_DRAFT_TOKENS) };
}

/** kvCache.offload -> { offloadMemory, offloadDisk, offloadPath }, or {} when there is none. */
function offloadOptions(value) {
  if (value === undefined) return {};
  const o = checkKeys(checkObject(value, 'kvCache.offload'), OFFLOAD_KEYS, 'kvCache.offload');
  const bytes = (v, name) => checkNumber(v, name, { min: 0, integer: true, max: Number.MAX_SAFE_INTEGER });
  const memory = bytes(o.memory, 'kvCache.offload.memory');
  const disk = bytes(o.disk, 'kvCache.offload.disk');
  if (o.path !== undefined && (typeof o.path !== 'string' || o.path.length === 0)) {
    throw new TypeError(`kvCache.offload.path must be a folder's path (a non-empty string), got ${describe(o.path)}`);
  }
  if (disk > 0 && o.path === undefined) throw new TypeError('kvCache.offload.disk needs kvCache.offload.path: the folder of the disk tier');
  if (o.path !== undefined && !(disk > 0)) throw new TypeError('kvCache.offload.path needs kvCache.offload.disk: the disk tier\'s size in bytes');
  if (!(memory > 0) && !(disk > 0)) throw new TypeError('kvCache.offload needs memory or disk: a tier size in bytes');
  return { offloadMemory: memory, offloadDisk: disk, offloadPath: o.path };
}

/**
 * { dtype, kType, vType } -> { kvKType, kvVType } (undefined: the engine's f16). `dtype` sets both; a kType or
 * vType beside it must agree with it. `name` prefixes the keys in errors ('kvCache' or '' for top-level keys).
 */
function kvTypes({ dtype, kType, vType }, name) {
  const key = (k) => (name ? `${name}.${k}` : k);
  for (const [k, value] of [['dtype', dtype], ['kType', kType], ['vType', vType]]) {
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new TypeError(`${key(k)} must be a string (one of ${KV_DTYPES.join(', ')}), got ${describe(value)}`);
    if (!KV_DTYPES.includes(value)) throw new RangeError(`${key(k)} must be one of ${KV_DTYPES.join(', ')}, got ${describe(value)}`);
  }
  for (const [k, value] of [['kType', kType], ['vType', vType]]) {
    if (dtype !== undefined && value !== undefined && value !== dtype) {
      throw new TypeError(`${key('dtype')} '${dtype}' sets both K and V, but ${key(k)} is '${value}': give dtype alone, or kType and vType`);
    }
  }
  return { kvKType: kType ?? dtype, kvVType: vType ?? dtype };
}

/** Engine.load options -> the native options object. */
function loadOptions(options) {
  const o = checkKeys(checkObject(options, 'options'), LOAD_KEYS, 'Engine.load() options');
  const kv = checkKeys(checkObject(o.kvCache, 'kvCache'), KV_CACHE_KEYS, 'kvCache');
  const types = kvTypes(kv, 'kvCache');
  if (kv.blocks !== undefined && kv.memory !== undefined) throw new TypeError('give kvCache.blocks or kvCache.memory, not both');
  if (o.device !== undefined && !DEVICES.includes(o.device)) {
    throw new RangeError(`device must be one of ${DEVICES.join(', ')}, got ${describe(o.device)}`);
  }
  return {
    device: o.device,
    gpu: int(o.gpu, 'gpu', 0, 1023),
    gpuMemoryFraction: checkNumber(kv.gpuMemoryFraction, 'kvCache.gpuMemoryFraction', { min: 0, max: 1, exclusiveMin: true }),
    threads: int(o.threads, 'threads', 1, 1024),
    contextLength: int(o.contextLength, 'contextLength', 1, 1 << 24),
    blockSize: int(kv.blockSize, 'kvCache.blockSize', 1, 1024),
    kvBlocks: int(kv.blocks, 'kvCache.blocks', 1),
    kvMemory: checkNumber(kv.memory, 'kvCache.memory', { min: 1, integer: true, max: Number.MAX_SAFE_INTEGER }),
    ...types,
    ...offloadOptions(kv.offload),
    maxBatchTokens: int(o.maxBatchTokens, 'maxBatchTokens', 1, 1 << 20),
    prefault: checkBoolean(o.prefault, 'prefault'),
    mmap: checkBoolean(o.mmap, 'mmap'),
    onProgress: checkFunction(o.onProgress, 'onProgress'),
    speculative: speculativeOption(o.speculative),
    ...draftOptions(o.draft),
  };
}

/** Engine.inspect options -> the native options object. */
function inspectOptions(options) {
  const o = checkKeys(checkObject(options, 'options'), INSPECT_KEYS, 'Engine.inspect() options');
  const kv = checkKeys(checkObject(o.kvCache, 'kvCache'), INSPECT_KV_CACHE_KEYS, 'kvCache');
  const types = kvTypes(kv, 'kvCache');
  if (o.device !== undefined && !DEVICES.includes(o.device)) {
    throw new RangeError(`device must be one of ${DEVICES.join(', ')}, got ${describe(o.device)}`);
  }
  return {
    device: o.device,
    gpu: int(o.gpu, 'gpu', 0, 1023),
    ...types,
    blockSize: int(kv.blockSize, 'kvCache.blockSize', 1, 1024),
    sequences: int(o.sequences, 'sequences', 1, 1 << 20),
    memory: checkNumber(o.memory, 'memory', { min: 1, integer: true, max: Number.MAX_SAFE_INTEGER }),
  };
}

/**
 * generate() options -> { params for the engine, JS-side hooks }. Sampling settings left out take
 * DEFAULT_SAMPLING's values. `name` is the call whose options these are, for the unknown-key error.
 */
function generateOptions(options, name = 'generate() options') {
  const o = checkKeys(checkObject(options, 'options'), GENERATE_KEYS, name);
  let stop = o.stop;
  if (typeof stop === 'string') stop = [stop];
  if (stop !== undefined && (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string'))) {
    throw new TypeError(`stop must be a string or an array of strings, got ${describe(o.stop)}`);
  }
  // null is a wrong type, not a missing value: only undefined takes the default.
  const sampling = (key) => (o[key] === undefined ? DEFAULT_SAMPLING[key] : o[key]);
  const params = {
    n: int(o.n, 'n', 1, 64),
    maxTokens: int(sampling('maxTokens'), 'maxTokens', 1),
    temperature: checkNumber(sampling('temperature'), 'temperature', { min: 0, max: 100 }),
    topK: int(sampling('topK'), 'topK', 0),
    topP: checkNumber(sampling('topP'), 'topP', { min: 0, max: 1, exclusiveMin: true }),
    minP: checkNumber(sampling('minP'), 'minP', { min: 0, max: 1 }),
    repetitionPenalty: checkNumber(sampling('repetitionPenalty'), 'repetitionPenalty', { min: 0, exclusiveMin: true, max: 100 }),
    frequencyPenalty: checkNumber(sampling('frequencyPenalty'), 'frequencyPenalty', { min: -100, max: 100 }),
    presencePenalty: checkNumber(sampling('presencePenalty'), 'presencePenalty', { min: -100, max: 100 }),
    penaltyLastN: int(sampling('penaltyLastN'), 'penaltyLastN', -1),
    seed: checkNumber(o.seed, 'seed', { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true }),
    stop,
    stopTokens: o.stopTokens === undefined ? undefined : checkTokenIds(o.stopTokens, 'stopTokens'),
    ignoreEos: checkBoolean(o.ignoreEos, 'ignoreEos'),
    cacheSalt: checkString(o.cacheSalt, 'cacheSalt'),
    logprobs: int(o.logprobs, 'logprobs', 0, MAX_LOGPROBS), // 0: the token's own logprob, no alternatives
    speculative: speculativeOption(o.speculative),
    ...grammarOptions(o),
  };
  return {
    params,
    onToken: checkFunction(o.onToken, 'onToken'),
    signal: checkSignal(o.signal),
    addBos: checkBoolean(o.addBos, 'addBos') ?? true,
    special: checkBoolean(o.special, 'special') ?? false,
  };
}

// grammar (GBNF text), jsonSchema (an object, or its JSON text) or json: true -> what the addon compiles.
// At most one: each is a whole constraint, and combining them has no single meaning.
function grammarOptions(o) {
  const given = ['grammar', 'jsonSchema', 'json'].filter((key) => o[key] !== undefined);
  if (given.length > 1) throw new TypeError(`pass one of grammar, jsonSchema and json, not ${given.join(' and ')}`);
  if (o.grammar !== undefined) return { grammar: checkString(o.grammar, 'grammar') };
  if (o.jsonSchema !== undefined) return { jsonSchema: schemaText(o.jsonSchema) };
  if (o.json !== undefined) return { json: checkBoolean(o.json, 'json') };
  return {};
}

function schemaText(schema) {
  if (typeof schema === 'string') return schema;
  // JSON Schema allows a boolean schema at the root: true is any value, false none.
  if (typeof schema === 'boolean' || (schema !== null && typeof schema === 'object' && !Array.isArray(schema))) return JSON.stringify(schema);
  throw new TypeError(`jsonSchema must be a JSON Schema (an object or its JSON text), got ${describe(schema)}`);
}

const CONTEXT_OVERFLOW_POLICIES = ['truncate-oldest', 'error'];

/** contextOverflow's value (lib/overflow.js), checked: undefined (the caller's default) or one of the policies. */
function checkContextOverflow(value, name = 'contextOverflow') {
  if (value === undefined || CONTEXT_OVERFLOW_POLICIES.includes(value)) return value;
  throw new TypeError(`${name} must be 'truncate-oldest' or 'error', got ${typeof value === 'string' ? JSON.stringify(value) : describe(value)}`);
}

/** embed() options -> { normalize, pooling, signal }. */
function embedOptions(options) {
  const o = checkKeys(checkObject(options, 'options'), EMBED_KEYS, 'embed() options');
  if (o.pooling !== undefined && !POOLINGS.includes(o.pooling)) throw new TypeError(`pooling must be one of ${POOLINGS.join(', ')}, got ${describe(o.pooling)}`);
  return { normalize: checkBoolean(o.normalize, 'normalize') ?? true, pooling: o.pooling, signal: checkSignal(o.signal) };
}

module.exports = {
  KV_DTYPES,
  kvTypes,
  EMBED_KEYS,
  embedOptions,
  LOAD_KEYS,
  DRAFT_KEYS,
  KV_CACHE_KEYS,
  INSPECT_KEYS,
  GENERATE_KEYS,
  CHAT_KEYS,
  CONTEXT_OVERFLOW_POLICIES,
  checkContextOverflow,
  MAX_LOGPROBS,
  MAX_SPECULATIVE_TOKENS,
  DEFAULT_SPECULATIVE_TOKENS,
  speculativeOption,
  checkKeys,
  closestKey,
  loadOptions,
  inspectOptions,
  generateOptions,
  schemaText,
  checkTokenIds,
  checkObject,
  checkBoolean,
  checkFunction,
  int,
};
