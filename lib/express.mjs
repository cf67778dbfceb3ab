// The ESM entry of `pagedlm/express`: the CommonJS router module's exports by name (one module instance
// whether a program imports or requires it).
import router from './express.js';

export const { createRouter, HttpError } = router;
export default router;
