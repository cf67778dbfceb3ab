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
  if (error instanceof PagedlmError || typeof error?.code !== 'string') return error;
  const wrapped = new PagedlmError(error.message, error.code);
  wrapped.stack = error.stack;
  return wrapped;
}

module.exports = { PagedlmError, fromNative };
