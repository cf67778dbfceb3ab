// Types of `import ... from 'pagedlm'`: the declarations of the CommonJS entry, which the ESM entry re-exports.
import * as pagedlm from './index.js';

export * from './index.js';
export default pagedlm;
