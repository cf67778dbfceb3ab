'use strict';

// Grammar text for composing constraints: a JSON Schema as GBNF rules that can be embedded in a bigger
// grammar passed to generate({ grammar }).

const binding = require('./native');
const { checkKeys, checkObject, schemaText } = require('./options');

/**
 * GBNF whose start rule `<rulePrefix>root` matches exactly the JSON texts valid against `schema`; every rule
 * it defines starts with `rulePrefix` (default ''), so that several can share one grammar.
 */
function jsonSchemaToGrammar(schema, options = {}) {
  const { rulePrefix = '' } = checkKeys(checkObject(options, 'options'), ['rulePrefix'], 'jsonSchemaToGrammar() options');
  if (typeof rulePrefix !== 'string' || !/^[a-zA-Z0-9-]*$/.test(rulePrefix)) {
    throw new TypeError('rulePrefix must be a string of letters, digits and dashes');
  }
  return binding.jsonSchemaToGrammar(schemaText(schema), rulePrefix);
}

module.exports = { jsonSchemaToGrammar };
