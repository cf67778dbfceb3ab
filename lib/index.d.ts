// Type declarations for pagedlm's JavaScript API.

export type ErrorCode =
  | 'ERR_MODEL_FORMAT'
  | 'ERR_UNSUPPORTED'
  | 'ERR_IO'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_GRAMMAR'
  | 'ERR_INVALID_SCHEMA'
  | 'ERR_CONTEXT_OVERFLOW'
  | 'ERR_POOL_TOO_SMALL'
  | 'ERR_CLOSED'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_CACHE_FILE'
  | 'ERR_CUDA'
  | 'ERR_INTERNAL'
  | 'ERR_ADDON_MISSING'
  | 'ERR_HUB_SPEC'
  | 'ERR_HUB_NOT_FOUND'
  | 'ERR_HUB_NO_MATCH'
  | 'ERR_HUB_AUTH'
  | 'ERR_HUB_NETWORK'
  | 'ERR_HUB_PROTOCOL'
  | 'ERR_HUB_CHECKSUM'
  | 'ERR_HUB_OFFLINE'
  | 'ERR_HUB_BUSY'
  | 'ERR_HUB_NOT_CACHED';

/** Every failure the engine reports carries a stable `code`. ERR_INVALID_GRAMMAR and ERR_INVALID_SCHEMA come on a
 *  TypeError (thrown before a request is submitted), the others on a PagedlmError. */
export class PagedlmError extends Error {
  readonly code: ErrorCode;
}

export type KvDtype = 'f32' | 'f16' | 'bf16' | 'int8' | 'fp8' | 'int4';

export interface KvCacheOptions {
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Pool size in blocks. Default: room for 4 full contexts, within half the memory left after the weights. */
  blocks?: number;
  /** Pool size in bytes (instead of `blocks`). */
  memory?: number;
  /** Element type of the cached keys and values (default 'f16'): sets kType and vType both. int8 and fp8 (e4m3)
   *  add one float scale per token and KV head; int4 is grouped as kType / vType say (docs/kv-memory.md). */
  dtype?: KvDtype;
  /** Element type of the keys alone (default: dtype). int4 keys share an f16 scale per channel within each block.
   *  A kType beside a dtype that differs from it is a TypeError. */
  kType?: KvDtype;
  /** Element type of the values alone (default: dtype). int4 values take an f16 scale per 32 values of each row. */
  vType?: KvDtype;
  /** With the CUDA backend and neither `blocks` nor `memory`: the pool takes this fraction of the GPU memory
   *  left after the weights, in (0, 1]. */
  gpuMemoryFraction?: number;
  /** Tiers that keep cached blocks the pool evicts: host memory, then disk (docs/kv-memory.md). */
  offload?: KvOffloadOptions;
}

export interface KvOffloadOptions {
  /** Host-memory tier size in bytes (pinned memory on CUDA). */
  memory?: number;
  /** Disk tier size in bytes (needs `path`); its files outlive the engine. */
  disk?: number;
  /** The disk tier's folder, created when missing; several models may share it. */
  path?: string;
}

export interface OffloadTierStats {
  capacityBytes: number;
  bytes: number;
  blocks: number;
  /** Blocks restored from this tier by prefix hits. */
  hits: number;
}

export interface OffloadStats {
  memory: OffloadTierStats;
  disk: OffloadTierStats;
  /** Evicted blocks the tiers took. */
  offloadedBlocks: number;
  /** Copies into a tier that failed (the block was dropped). */
  writeErrors: number;
  /** Restores that failed (the hit was recomputed). */
  readErrors: number;
}

export interface LoadOptions {
  /** Where to compute (default 'auto': CUDA when pagedlm was built with it and a device is present, else the
   *  CPU; `info().backendReason` says why). 'cuda' fails with an Error saying why when CUDA cannot run. */
  device?: 'auto' | 'cuda' | 'cpu';
  /** CUDA device index (default 0). */
  gpu?: number;
  /** Compute threads (default: one per core). */
  threads?: number;
  /** Context length to serve (default: the model's trained context, capped by what fits in memory;
   *  `info().contextLimit` says which limit applied). */
  contextLength?: number;
  kvCache?: KvCacheOptions;
  /** Most tokens one forward pass computes; longer prompts are prefilled in chunks (default 512). */
  maxBatchTokens?: number;
  /** Read all weights at load so the first request does not wait on the disk (default true). */
  prefault?: boolean;
  /** Memory-map the model file (default true). false copies it into memory: more RAM, but immune to the file
   *  being truncated or rewritten in place on disk while loaded (which kills a process that maps it). */
  mmap?: boolean;
  /** Progress in [0, 1], once per phase: for an hf: spec the cache lacks, the download (phase 'download', with
   *  bytes, totalBytes and bytesPerSecond), then the load (phase 'load'). */
  onProgress?: (fraction: number, detail: LoadProgress) => void;
  /** Where and how an hf: spec is downloaded (ignored for a file path). */
  hub?: HubOptions;
  /** A draft model for speculative decoding (docs/speculative.md). */
  draft?: DraftOptions;
  /** The speculative decoding of requests that do not set `speculative` themselves (default false: off). */
  speculative?: SpeculativeOption;
}

export interface DraftOptions {
  /** A smaller GGUF with exactly the target's vocabulary (a file path or an hf: spec); it runs on the CPU beside
   *  the target, with its own small KV pool. Another vocabulary fails the load. */
  model: string;
  /** Most tokens it proposes per step, 1 to 16 (default 4). */
  tokens?: number;
}

/** Speculative decoding (docs/api.md, "Speculative decoding"): false (off), a proposer, or a proposer and the most
 *  tokens it proposes a step (`tokens`, 1 to 16, default 4). The output is what plain decoding gives. */
export type SpeculativeOption = false | 'ngram' | 'draft' | { proposer: 'ngram' | 'draft'; tokens?: number };

/** What speculative decoding came to: tokens proposed, of those accepted, accepted / proposed, and the tokens
 *  each verifying step produced (the accepted ones plus one from the model). */
export interface SpeculationStats {
  proposed: number;
  accepted: number;
  acceptanceRate: number;
  tokensPerStep: number;
}

export interface LoadProgress {
  phase: 'download' | 'load';
  /** Bytes of the model on disk so far (files already cached count as done) and in all; download phase only. */
  bytes?: number;
  totalBytes?: number;
  /** Bytes per second this download has run at; download phase only. */
  bytesPerSecond?: number;
}

export interface DownloadProgress {
  bytes: number;
  totalBytes: number;
  bytesPerSecond: number;
}

/** Options for models named by hf: specs (docs/models.md). Environment defaults as Hugging Face's clients read them. */
export interface HubOptions {
  /** The cache folder (default PAGEDLM_CACHE_DIR, else $XDG_CACHE_HOME/pagedlm, else ~/.cache/pagedlm). */
  cacheDir?: string;
  /** The hub (default HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Access token for private and gated repositories (default HF_TOKEN, else the file huggingface-cli login wrote);
   *  sent to the endpoint's origin only. */
  token?: string;
  /** Use the cache only, never the network (default: HF_HUB_OFFLINE). */
  offline?: boolean;
  /** Milliseconds without data before a request fails with ERR_HUB_NETWORK (default 30000). */
  timeoutMs?: number;
  /** Download progress, as the bytes arrive. */
  onProgress?: (progress: DownloadProgress) => void;
}

export type ContextLimit = 'option' | 'model' | 'memory' | 'kvCache';

export interface InspectOptions {
  /** Whose memory to plan with (default 'auto': the CUDA device when one can be used, else the CPU's RAM);
   *  'cuda' fails with an Error saying why when no device can be used. */
  device?: 'auto' | 'cuda' | 'cpu';
  /** CUDA device index (default 0). */
  gpu?: number;
  kvCache?: { dtype?: KvDtype; kType?: KvDtype; vType?: KvDtype; blockSize?: number };
  /** maxContextLength is per sequence, for this many sequences at once (default 1). */
  sequences?: number;
  /** Bytes to plan with (default: the device's free memory on CUDA; on the CPU the memory available now,
   *  Linux MemAvailable, else physical memory). */
  memory?: number;
  /** Where and how an hf: spec is downloaded before its metadata is read (ignored for a file path). */
  hub?: HubOptions;
}

/** A model's needs, read from its metadata alone (the weights are neither read nor mapped). */
export interface ModelInspection {
  architecture: string;
  name: string;
  /** Files the model spans (more than one for a split model). */
  files: number;
  parameters: number;
  weightBytes: number;
  /** Weight bytes by tensor type name ('Q4_K', 'Q6_K', 'F32', ...). */
  weightBytesByType: Record<string, number>;
  vocabSize: number;
  embeddingLength: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Multi-head latent attention (deepseek2): one KV head whose rows (headDim: the latent and the RoPE key
   *  part) hold V inside K, so the pool stores K rows only. */
  latentAttention: boolean;
  feedForwardLength: number;
  trainedContextLength: number;
  /** For each kvCache.dtype (K and V both of it), at kvCache.blockSize: layers x kvHeads x (K row + V row
   *  bytes, scales included; no V row with latentAttention; int4 K's per-block scales divided by the block
   *  size, rounded up). */
  kvBytesPerToken: Record<KvDtype, number>;
  /** The same for the planned K and V types. */
  kvPlannedBytesPerToken: number;
  /** The K and V type the figures below assume: kvDtype where the two agree (else null). */
  kvDtype: KvDtype | null;
  kvKType: KvDtype;
  kvVType: KvDtype;
  /** Whose memory was planned with, and the CUDA device's name (or null). */
  device: 'cpu' | 'cuda';
  gpu: string | null;
  /** Bytes the weights take there: as stored on the CPU; on CUDA, types without device kernels widen to f16. */
  deviceWeightBytes: number;
  memoryBytes: number;
  memorySource: 'MemAvailable' | 'physical memory' | 'cuda' | 'option';
  /** The KV pool's default share: half the memory left after deviceWeightBytes. */
  kvBudgetBytes: number;
  sequences: number;
  /** The longest context each of `sequences` sequences can hold within kvBudgetBytes. */
  maxContextLength: number;
  /** The context Engine.load picks with no contextLength or pool option, and what limited it. */
  contextLength: number;
  contextLimit: ContextLimit;
}

export interface Token {
  /** Token id. */
  id: number;
  /** Which completion it belongs to (0 unless `n` > 1). */
  index: number;
  /** The text this token completes: may be '' while a UTF-8 character or a possible stop string is incomplete. */
  text: string;
  /** With the `logprobs` option: this token's entry (one). */
  logprobs?: TokenLogprob[];
}

/** A token's log-probability: the natural log of its softmax probability over the model's raw logits (before
 *  penalties, temperature and top-k/top-p/min-p), so it does not depend on the sampling settings. */
export interface LogprobCandidate {
  token: number;
  /** The token's own text (a partial UTF-8 character shows as U+FFFD; `bytes` is exact). */
  text: string;
  bytes: number[];
  logprob: number;
}

export interface TokenLogprob extends LogprobCandidate {
  /** The `logprobs` most likely tokens at this position, most likely first (ties: lower id first). */
  top: LogprobCandidate[];
}

export interface GenerateOptions {
  /** Completions of the prompt (default 1, at most 64). They share the prompt's KV blocks; sampled ones
   *  differ, each seeded from `seed` and its index. */
  n?: number;
  /** Most tokens to generate (default 512). */
  maxTokens?: number;
  /** 0 = greedy (default 0.8). */
  temperature?: number;
  /** Keep the K most likely tokens; 0 = off (default 40). */
  topK?: number;
  /** Nucleus sampling threshold; 1 = off (default 0.95). */
  topP?: number;
  /** Drop tokens less likely than minP x the most likely; 0 = off (default 0.05). */
  minP?: number;
  /** Divides positive / multiplies negative logits of recent tokens; 1 = off (default). */
  repetitionPenalty?: number;
  /** Subtracted per earlier occurrence of a token (default 0). */
  frequencyPenalty?: number;
  /** Subtracted once from tokens that occurred (default 0). */
  presencePenalty?: number;
  /** How many recent tokens the penalties consider; -1 = all (default 64). */
  penaltyLastN?: number;
  /** Same seed, same output. */
  seed?: number;
  /** Generation ends before any of these strings; they are not part of the text. */
  stop?: string | string[];
  /** Generation ends at any of these token ids (not included in the output). */
  stopTokens?: number[];
  /** Keep generating past end-of-sequence tokens. */
  ignoreEos?: boolean;
  /** Requests share cached prefixes only with requests of the same salt (e.g. one per user). */
  cacheSalt?: string;
  /** Prepend BOS to a text prompt when the model asks for it (default true). */
  addBos?: boolean;
  /** Recognise control-token text such as '<s>' in a text prompt (default false). */
  special?: boolean;
  /** Called for every generated token, on the event loop, as the engine produces it. */
  onToken?: (token: Token) => void;
  /** Aborting stops generation by the next engine step; the promise resolves with finishReason 'abort'. */
  signal?: AbortSignal;
  /** N in 0..20: every generated token comes with its log-probability and the N most likely alternatives
   *  (`logprobs` on the result, its choices and each token). Left out (default): none, at no cost. */
  logprobs?: number;
  /** A GBNF grammar (llama.cpp's syntax, start rule `root`): every completion is a prefix of a sentence of
   *  it, and ends where the grammar does. A malformed grammar throws a TypeError (code ERR_INVALID_GRAMMAR)
   *  naming line and column. At most one of grammar, jsonSchema and json. */
  grammar?: string;
  /** A JSON Schema (object or JSON text): the completion is JSON valid against it, parsed into `json`.
   *  Unsupported or malformed schemas throw a TypeError (code ERR_INVALID_SCHEMA) naming the keyword's path. */
  jsonSchema?: object | boolean | string;
  /** true: the completion is any JSON value, parsed into `json`. */
  json?: boolean;
  /** Speculative decoding for this request (default: the load-time `speculative`, else off). 'draft' without a draft
   *  model loaded rejects the request (code ERR_UNSUPPORTED). */
  speculative?: SpeculativeOption;
}

export interface Choice {
  index: number;
  text: string;
  tokens: number[];
  /** With the `logprobs` option: one per token. */
  logprobs?: TokenLogprob[];
  finishReason: 'stop' | 'length' | 'abort';
  /** With jsonSchema or json: the parsed completion, when it is complete JSON. */
  json?: unknown;
}

export interface GenerateResult {
  /** The first completion's text, tokens and finish reason. */
  text: string;
  tokens: number[];
  /** With the `logprobs` option: one per token. */
  logprobs?: TokenLogprob[];
  finishReason: 'stop' | 'length' | 'abort';
  /** With jsonSchema or json: the parsed first completion, when it is complete JSON. */
  json?: unknown;
  /** Every completion (one unless `n` > 1). */
  choices: Choice[];
  /** completionTokens counts every completion's tokens. */
  usage: { promptTokens: number; completionTokens: number };
  timings: { ttftMs: number; tokensPerSecond: number };
  /** When the request used speculative decoding: over all its completions. */
  speculation?: SpeculationStats;
}

export type EmbeddingPooling = 'mean' | 'cls' | 'last';

export interface EmbedOptions {
  /** Scale each vector to unit L2 norm (default true). */
  normalize?: boolean;
  /** Overrides the model's pooling (info().embeddingPooling). */
  pooling?: EmbeddingPooling;
  /** Aborting it cancels every input and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface EmbedResult {
  /** One vector of embeddingLength floats per input, in input order. */
  embeddings: Float32Array[];
  /** Tokens of all inputs together (BOS included where the model adds it). */
  promptTokens: number;
  /** The model's general.name. */
  model: string;
  pooling: EmbeddingPooling;
}

export interface EngineInfo {
  architecture: string;
  name: string;
  parameters: number;
  weightBytes: number;
  /** Weight bytes one decode step reads (all but the embedding rows it does not look up). */
  decodeWeightBytes: number;
  tensorType: string;
  vocabSize: number;
  embeddingLength: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Multi-head latent attention: the pool stores K rows only (V is the latent inside each). */
  latentAttention: boolean;
  feedForwardLength: number;
  trainedContextLength: number;
  contextLength: number;
  /** What set contextLength: the `contextLength` option, the model's trained context, the memory
   *  available, or a pool sized with kvCache.blocks / kvCache.memory. */
  contextLimit: ContextLimit;
  ropeFreqBase: number;
  tiedOutput: boolean;
  /** How embed() pools hidden states, from the GGUF's <arch>.pooling_type ('none' or absent: 'mean');
   *  null for a model whose pooling pagedlm does not compute (a reranker's 'rank'). */
  embeddingPooling: EmbeddingPooling | null;
  /** The pool's K and V types: kvDtype where they agree (else null). */
  kvDtype: KvDtype | null;
  kvKType: KvDtype;
  kvVType: KvDtype;
  /** layers x kvHeads x (K row + V row bytes, scales included; no V row with latentAttention), int4 K's
   *  per-block scales divided by the block size, rounded up. */
  kvBytesPerToken: number;
  kvBlockSize: number;
  kvBlocks: number;
  kvPoolBytes: number;
  backend: 'cpu' | 'cuda';
  /** Why this backend: 'asked for', 'a CUDA device was found', or why CUDA was not used (e.g. 'no NVIDIA driver
   *  found', 'no CUDA device found', 'built without CUDA (...)', a head size without CUDA kernels). */
  backendReason: string;
  /** The CUDA device's name, or null on the CPU. */
  gpu: string | null;
  /** Device memory the weights take (0 on the CPU). */
  gpuWeightBytes: number;
  /** RAM the CPU backend's packed copy of the matmul weights takes (0 on CUDA, and with the portable kernels,
   *  which read the model's own rows). */
  cpuWeightBytes: number;
  /** RAM the model file itself takes when loaded with mmap: false (0 when memory-mapped: the page cache holds
   *  it, and with a packed copy only its embedding rows stay resident). */
  modelHeapBytes: number;
  /** The CPU kernels chosen at run time ('' on the CUDA backend). */
  cpuKernels: 'avx512' | 'avx2' | 'neon-dotprod' | 'neon' | 'portable' | '';
  threads: number;
  tokenizer: 'llama' | 'gpt2';
  /** Byte-level BPE's pre-tokenizer (tokenizer.ggml.pre; 'default' when the file has none); '' for SentencePiece. */
  tokenizerPre: string;
  bosTokenId: number;
  eosTokenId: number;
  /** The BOS / EOS tokens' text, as chat templates see them. */
  bosToken: string;
  eosToken: string;
  /** GGUF tokenizer.chat_template, or null when the file has none (chat() then uses ChatML). */
  chatTemplate: string | null;
}

/** OpenAI's content parts: only text is supported. */
export interface ChatTextPart {
  type: 'text';
  text: string;
}

export interface ChatToolCall {
  id?: string;
  type?: 'function';
  /** `arguments` as a JSON string (OpenAI's form) is parsed into an object for the template. */
  function: { name: string; arguments?: string | Record<string, unknown> };
}

export interface ChatMessage {
  /** `developer` renders as `system` with templates that do not name it. */
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  /** May be null on an assistant message that carries `tool_calls`. */
  content: string | ChatTextPart[] | null;
  name?: string;
  /** Assistant messages only. */
  tool_calls?: ChatToolCall[];
  /** Tool messages only. */
  tool_call_id?: string;
}

/** A function the model may call (OpenAI's shape); `parameters` is a JSON Schema (default: no parameters). */
export interface ChatTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

/** How a model writes tool calls: Llama 3.1/3.2 JSON, Qwen/Hermes <tool_call>, Mistral [TOOL_CALLS], or plain JSON. */
export type ToolCallFormat = 'llama3' | 'hermes' | 'mistral' | 'generic';

export interface ChatOptions extends GenerateOptions {
  /** A Jinja chat template overriding the model's. */
  template?: string;
  /** Functions the model may call; they reach the template as `tools`. */
  tools?: ChatTool[];
  /** 'auto' (default with tools): the model decides; 'none': tools are left out of the prompt; 'required' or a
   * named function: the grammar engine makes the reply a call (of that function). */
  toolChoice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
  /** Several calls in one reply (default true); false keeps one. */
  parallelToolCalls?: boolean;
  /** Default: read from the chat template (Engine.toolCallFormat()). */
  toolCallFormat?: ToolCallFormat;
  /** A conversation longer than the context: 'truncate-oldest' (default) drops its oldest turns, keeping the
   * leading system and developer messages and room for the reply; 'error' rejects with ERR_CONTEXT_OVERFLOW. */
  contextOverflow?: ContextOverflow;
}

/** What chat() and the router do with a conversation longer than the context (docs/api.md). */
export type ContextOverflow = 'truncate-oldest' | 'error';

export interface ToolCall {
  id: string;
  type: 'function';
  /** `arguments`: the JSON text, as OpenAI gives it. */
  function: { name: string; arguments: string };
  /** The arguments, parsed. */
  arguments: Record<string, unknown>;
}

export interface ChatReply {
  message: { role: 'assistant'; content: string; tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[] };
  /** With tools: the calls the reply makes (empty when none). */
  toolCalls?: ToolCall[];
}

export interface ChatResult extends Omit<GenerateResult, 'finishReason' | 'choices'>, ChatReply {
  /** 'tool_calls' when the reply calls tools. */
  finishReason: GenerateResult['finishReason'] | 'tool_calls';
  choices: (Omit<GenerateResult['choices'][number], 'finishReason'> & ChatReply & { finishReason: GenerateResult['finishReason'] | 'tool_calls' })[];
  /** Messages contextOverflow 'truncate-oldest' dropped from the front of the conversation (0 when it fit). */
  truncatedMessages: number;
}

/** chat({ stream: true }): tokens as they come; `result` resolves to what chat() would. */
export interface ChatTokenStream extends Omit<TokenStream, 'result'> {
  result: Promise<ChatResult>;
  /** Known before the first token: messages dropped to fit the context. */
  truncatedMessages: number;
}

export interface EngineStats {
  /** KV blocks in the pool: blocksFree + blocksCached + blocksInUse (the same counts as CacheStats). */
  blocksTotal: number;
  /** Unused blocks. */
  blocksFree: number;
  /** Blocks no request holds that still carry a cached prefix; evicted least recently used first. */
  blocksCached: number;
  /** Blocks held by running requests and pins. */
  blocksInUse: number;
  /** Requests (completions) being computed / queued. */
  running: number;
  waiting: number;
  /** Engine steps (forward passes) so far. */
  steps: number;
  /** Times a running request gave its KV blocks back to make room, to be recomputed later. */
  preemptions: number;
  /** Tokens sampled, all requests. */
  generatedTokens: number;
  /** Tokens run through the model (prefill and decode). */
  computedTokens: number;
  /** Time spent in engine steps. */
  busySeconds: number;
  /** generatedTokens / busySeconds: aggregate generation throughput while working. */
  tokensPerSecond: number;
  /** Speculative decoding over all requests (zeros when none used it). */
  speculation: SpeculationStats;
}

export interface TokenStream extends AsyncIterableIterator<Token> {
  /** What generate() would resolve to (rejects likewise). */
  readonly result: Promise<GenerateResult>;
}

export interface CacheStats {
  blockSize: number;
  blocksTotal: number;
  /** Unused blocks. */
  blocksFree: number;
  /** Blocks held by running requests. */
  blocksInUse: number;
  /** Blocks no request holds that still carry a cached prefix; evicted least recently used first. */
  blocksCached: number;
  /** Token slots in running requests' blocks not yet written (fragmentation): under one block per request. */
  unusedSlots: number;
  /** Blocks held by pins (counted in blocksInUse). */
  blocksPinned: number;
  bytesPerToken: number;
  bytesTotal: number;
  /** Where the pool lives: 'cuda' (GPU memory) or 'cpu'. */
  device: 'cpu' | 'cuda';
  /** GPU memory the pool takes (0 on the CPU). */
  deviceBytes: number;
  /** The pool's K and V types: dtype where they agree (else null). */
  dtype: KvDtype | null;
  kType: KvDtype;
  vType: KvDtype;
  /** Requests that looked up the prefix cache. */
  prefixQueries: number;
  /** Requests that reused at least one cached block. */
  prefixHits: number;
  /** Prompt tokens looked up. */
  queryTokens: number;
  /** Prompt tokens served from the cache instead of computed. */
  hitTokens: number;
  /** hitTokens / queryTokens. */
  hitRate: number;
  evictions: number;
  /** The offload tiers, or null when kvCache.offload was not given. */
  offload: OffloadStats | null;
}

export interface Pin {
  id: number;
  /** Prompt tokens whose blocks are held (whole blocks only). */
  tokens: number;
}

export interface EngineCache {
  stats(): CacheStats;
  /** Forgets every cached block no request is using; resolves to how many were dropped. */
  clear(): Promise<number>;
  /** Computes (or finds) the prompt's KV and keeps its full blocks resident through eviction and clear(). */
  pin(prompt: string | number[] | Int32Array, options?: { cacheSalt?: string; addBos?: boolean; special?: boolean }): Promise<Pin>;
  /** Releases a pin; resolves to true when it was held. */
  unpin(pin: Pin | number): Promise<boolean>;
  /** Writes every cached prefix block (with a fingerprint of the model and KV layout) to `path`; resolves to how many. */
  save(path: string): Promise<number>;
  /** Adds the blocks saved by save() from the same model file and K/V types; resolves to how many were new.
   *  Another model's or K/V type pair's file, or a damaged one, rejects with ERR_CACHE_FILE and changes nothing. */
  load(path: string): Promise<number>;
}

export class Engine {
  private constructor();
  readonly cache: EngineCache;
  /** Loads a GGUF file, or an hf: spec (hf:owner/repo:Q4_K_M, hf:owner/repo/file.gguf) downloaded into the cache first. */
  static load(modelPath: string, options?: LoadOptions): Promise<Engine>;
  /** Plans a model's memory from its metadata, before loading it. */
  static inspect(modelPath: string, options?: InspectOptions): Promise<ModelInspection>;
  /** KV pool bytes for `sequences` x `contextLength` tokens (rounded up to whole blocks). */
  static estimateKvBytes(options: {
    model?: Engine | Pick<EngineInfo, 'layers' | 'kvHeads' | 'headDim'> & { contextLength?: number; latentAttention?: boolean };
    config?: { layers: number; kvHeads: number; headDim: number; latentAttention?: boolean };
    contextLength?: number;
    sequences?: number;
    dtype?: KvDtype;
    kType?: KvDtype;
    vType?: KvDtype;
    blockSize?: number;
  }): number;
  generate(prompt: string | number[] | Int32Array, options?: GenerateOptions): Promise<GenerateResult>;
  /**
   * Embeddings of a string, a token-id array, or an array of those (submitted together, sharing steps).
   * Text longer than the context is a RangeError; a non-string input a TypeError; `[]` resolves to no vectors.
   */
  embed(input: string | number[] | Int32Array | Array<string | number[] | Int32Array>, options?: EmbedOptions): Promise<EmbedResult>;
  /** generate() as an async iterator of tokens; leaving the loop early aborts the request. */
  stream(prompt: string | number[] | Int32Array, options?: GenerateOptions): TokenStream;
  /** Renders the messages with the model's chat template (ChatML fallback) and generates the reply. */
  chat(messages: ChatMessage[], options?: ChatOptions & { stream?: false }): Promise<ChatResult>;
  chat(messages: ChatMessage[], options: ChatOptions & { stream: true }): ChatTokenStream;
  /** What chat() would send for all the messages (before contextOverflow drops any): the rendered text, whether BOS is still added, and extra stop strings. */
  chatPrompt(messages: ChatMessage[], options?: { template?: string; tools?: ChatTool[] }): { text: string; addBos: boolean; stop: string[] };
  /** How the model (or `template`) writes tool calls, from the markers its chat template renders them with. */
  toolCallFormat(template?: string): ToolCallFormat;
  tokenize(text: string, options?: { addBos?: boolean; special?: boolean }): number[];
  detokenize(ids: number[] | Int32Array): string;
  info(): EngineInfo;
  stats(): EngineStats;
  /** Rejects requests in flight with ERR_CLOSED, frees the KV pool, joins the engine's threads. */
  close(): Promise<void>;
  readonly closed: boolean;
}

/** Sampling settings a request gets for what it leaves out; the router, its chat page and the CLI use the same. */
export const DEFAULT_SAMPLING: Readonly<{
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  penaltyLastN: number;
}>;

/** GBNF whose start rule `<rulePrefix>root` matches exactly the JSON texts valid against `schema`, for
 *  embedding in a bigger grammar passed to generate({ grammar }). Every rule it defines starts with
 *  `rulePrefix` (letters, digits, dashes; default ''). */
export function jsonSchemaToGrammar(schema: object | boolean | string, options?: { rulePrefix?: string }): string;
