'use strict';
// The sampling settings a request gets for what it leaves out. generate(), the router (for fields an OpenAI
// request omits), the chat page (which sends none) and the CLI all take them from here, so one prompt
// samples alike through each. docs/api.md documents them.

const DEFAULT_SAMPLING = Object.freeze({
  maxTokens: 512,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  penaltyLastN: 64,
});

module.exports = { DEFAULT_SAMPLING };
