// Types of `import ... from 'pagedlm/express'`: the declarations of the CommonJS router module it re-exports.
import * as router from './express.js';

export * from './express.js';
export default router;
