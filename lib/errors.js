'use strict';

/** An Error with a stable `code` (ERR_MODEL_FORMAT, ERR_CONTEXT_OVERFLOW, ERR_CLOSED, ...). */
class PagedlmError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'PagedlmError';
    this.code = code;
  }
}

/** Native errors carry `code` already; give them pagedlm's class so `instanceof` works. */
function fromNative(error) {
  // A TypeError or RangeError keeps its class (a grammar's ERR_INVALID_GRAMMAR is one): callers test for it.
  // By name: the addon creates its errors in the main context, which a vm context (Jest's) does not share.
  if (error instanceof PagedlmError || ['TypeError', 'RangeError'].includes(error?.name) || typeof error?.code !== 'string') return error;
  const wrapped = new PagedlmError(error.message, error.code);
  wrapped.stack = error.stack;
  return wrapped;
}

module.exports = { PagedlmError, fromNative };
