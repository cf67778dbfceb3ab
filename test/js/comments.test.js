'use strict';
// Code comments say why, not how fast: a measured figure (a rate, a latency, a percentage) goes stale with
// the next compiler or machine, so it lives in docs/benchmarks.md with its date, machine and command.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..');
const SOURCE = /\.(h|hpp|cpp|cc|inl|cu|cuh)$/;
// A number followed by a rate, a time or a percentage, or "N times faster/slower".
const FIGURE = /\d(?:[\d.,]*)\s*(?:%|[GMKT]i?B\/s|G(?:MAC|FLOP)S?\/s|T(?:FLOP|OP)S?\/s|tok(?:en)?s?\/s|µs|us\b|ms\b|ns\b|x (?:faster|slower)|times (?:faster|slower))/i;

function sourceFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return SOURCE.test(entry.name) ? [full] : [];
  });
}

// The comment text of each line: after `//`, or inside a /* */ block.
function commentLines(text) {
  const lines = [];
  let inBlock = false;
  text.split('\n').forEach((line, index) => {
    let comment = '';
    if (inBlock) {
      const end = line.indexOf('*/');
      comment = end < 0 ? line : line.slice(0, end);
      inBlock = end < 0;
    } else {
      const slashes = line.indexOf('//');
      const block = line.indexOf('/*');
      if (slashes >= 0 && (block < 0 || slashes < block)) comment = line.slice(slashes + 2);
      else if (block >= 0) {
        const end = line.indexOf('*/', block + 2);
        comment = end < 0 ? line.slice(block + 2) : line.slice(block + 2, end);
        inBlock = end < 0;
      }
    }
    if (comment) lines.push({ number: index + 1, comment });
  });
  return lines;
}

test('no measured figure in a code comment under native/ or kernels/', () => {
  const offenders = [];
  for (const file of [...sourceFiles(path.join(root, 'native')), ...sourceFiles(path.join(root, 'kernels'))]) {
    for (const { number, comment } of commentLines(fs.readFileSync(file, 'utf8'))) {
      if (FIGURE.test(comment)) offenders.push(`${path.relative(root, file)}:${number}: ${comment.trim()}`);
    }
  }
  expect(offenders).toEqual([]);
});

test('the check finds a figure in either comment form', () => {
  const found = (text) => commentLines(text).some(({ comment }) => FIGURE.test(comment));
  expect(found('int x;  // streams at 42 GB/s')).toBe(true);
  expect(found('/* took 2.5 ms\n  and 96% of a read */')).toBe(true);
  expect(found(' * 21 to 42 GMAC/s on one thread')).toBe(false);  // not inside a comment opened here
  expect(found('const int kPercent = 96; // a share of the block size')).toBe(false);
});
