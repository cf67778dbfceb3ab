// The ESM entry of `pagedlm`: the CommonJS module's exports by name, so a program that both imports and
// requires pagedlm gets the same classes and loads the addon once.
import pagedlm from './index.js';

export const { Engine, PagedlmError, DEFAULT_SAMPLING, jsonSchemaToGrammar } = pagedlm;
export default pagedlm;
