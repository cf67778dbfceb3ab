'use strict';
// The command line's arguments: node:util parseArgs, then every numeric flag read as a number of the kind
// it holds and every choice flag checked, so a bad value is an error naming the flag before a model loads.

const { parseArgs } = require('node:util');

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/** A flag holding an integer in [min, max]. */
const integer = (min, max = Number.MAX_SAFE_INTEGER) => ({ integer: true, min, max });
/** A flag holding any number in [min, max] (above min when `aboveMin`). */
const decimal = (min, max, { aboveMin = false } = {}) => ({ integer: false, min, max, aboveMin });

function describeRange({ integer: whole, min, max, aboveMin }) {
  const kind = whole ? 'an integer' : 'a number';
  if (max === Number.MAX_SAFE_INTEGER || max === Infinity) return `${kind} ${aboveMin ? 'above' : 'of at least'} ${min}`;
  return aboveMin ? `${kind} above ${min} and at most ${max}` : `${kind} from ${min} to ${max}`;
}

/** `text` as the number `spec` describes, or an Error naming `--flag` and what it takes. */
function readNumber(flag, text, spec) {
  const value = Number(text);
  const fits =
    DECIMAL.test(text.trim()) &&
    (!spec.integer || Number.isInteger(value)) &&
    value <= spec.max &&
    (spec.aboveMin ? value > spec.min : value >= spec.min);
  if (!fits) throw new Error(`--${flag} must be ${describeRange(spec)}, got '${text}'`);
  return value;
}

/** "8GiB", "512MB", "1e9" -> bytes; anything else is an Error naming `--flag`. */
function readBytes(flag, text) {
  const match = /^(\d+\.?\d*|\.\d+)(e\d+)?\s*(k|m|g|t)?(i)?b?$/i.exec(String(text).trim());
  const power = match ? ({ k: 1, m: 2, g: 3, t: 4 }[(match[3] || '').toLowerCase()] ?? 0) : 0;
  const bytes = match ? Math.floor(Number(match[1] + (match[2] ?? '')) * (match[4] ? 1024 : 1000) ** power) : NaN;
  if (!(bytes >= 1 && bytes <= Number.MAX_SAFE_INTEGER)) throw new Error(`--${flag} must be a size such as 8GiB, 512MB or 1e9 bytes, got '${text}'`);
  return bytes;
}

// parseArgs reads `--max-tokens -3` as a flag missing its value; for a numeric flag, a negative number after
// it is its value, so the range check can say what the flag takes.
function joinNegativeNumbers(argv, options, numeric) {
  const shorts = new Map(Object.entries(options).filter(([, o]) => o.short).map(([name, o]) => [`-${o.short}`, name]));
  const joined = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : shorts.get(argv[i]);
    if (name in numeric && NEGATIVE_NUMBER.test(argv[i + 1] ?? '')) joined.push(`--${name}=${argv[++i]}`);
    else joined.push(argv[i]);
  }
  return joined;
}

/**
 * argv -> { values, positionals } with `numeric` flags ({ flag: integer(...) | decimal(...) | 'bytes' }) as
 * numbers and `choices` flags ({ flag: [allowed] }) checked.
 */
function parseCommandLine(argv, { options, numeric = {}, choices = {} }) {
  const { values, positionals } = parseArgs({ args: joinNegativeNumbers(argv, options, numeric), options, allowPositionals: true });
  for (const [flag, spec] of Object.entries(numeric)) {
    if (values[flag] === undefined) continue;
    values[flag] = spec === 'bytes' ? readBytes(flag, values[flag]) : readNumber(flag, values[flag], spec);
  }
  for (const [flag, allowed] of Object.entries(choices)) {
    if (values[flag] !== undefined && !allowed.includes(values[flag])) {
      throw new Error(`--${flag} must be one of ${allowed.join(', ')}, got '${values[flag]}'`);
    }
  }
  return { values, positionals };
}

module.exports = { parseCommandLine, integer, decimal, readBytes };
