import type { Router } from 'express';
import type { ContextOverflow, Engine } from './index';

export interface RouterOptions {
  /** Model id reported by /v1/models and in responses (default: the GGUF's general.name). */
  model?: string;
  /** Serve the streaming chat page at GET / (default false). */
  ui?: boolean;
  /** Largest max_tokens accepted (default 4096); larger requests get a 400. */
  maxTokens?: number;
  /** max_tokens when a request gives none (default DEFAULT_SAMPLING.maxTokens). */
  defaultMaxTokens?: number;
  /** Largest n accepted (default 8). */
  maxN?: number;
  /** express.json body limit (default '1mb'). */
  bodyLimit?: string;
  /** Require `Authorization: Bearer <key>` on /v1 routes (401 otherwise). */
  apiKey?: string | string[];
  /** Require the API key on GET /metrics too (default false: /metrics is open); needs `apiKey`. */
  protectMetrics?: boolean;
  /** Largest prompt in tokens (default: the engine's context length); longer ones get a 400. */
  maxPromptTokens?: number;
  /** Longest a generation may run before it is aborted and answered with a 504 `request_timeout` error (default 600000 ms). */
  requestTimeoutMs?: number;
  /** How long a streaming client may stop reading before its generation is aborted and it is dropped (default 30000 ms). */
  stallTimeoutMs?: number;
  /** Use the request's `user` field as the prefix-cache salt when no tenant header or API key gives one (default true). */
  saltByUser?: boolean;
  /** Let all requests share cached prefixes (default false: per tenant header, API key, or user). */
  shareCache?: boolean;
  /** A chat longer than the context: 'error' (default) answers 400 context_length_exceeded, as OpenAI does;
   * 'truncate-oldest' drops its oldest turns and reports how many messages in `x-pagedlm-truncated-messages`. */
  contextOverflow?: ContextOverflow;
}

/** OpenAI-compatible routes over one engine: /v1/chat/completions, /v1/completions, /v1/models, /v1/cache/stats, /metrics. */
export function createRouter(engine: Engine, options?: RouterOptions): Router;

export class HttpError extends Error {
  status: number;
  type: string;
  param: string | null;
  code: string | null;
}
