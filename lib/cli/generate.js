'use strict';
// pagedlm generate: stream one completion of --prompt to stdout; Ctrl-C aborts it.

const { loadEngine, samplingOptions, usageLine } = require('./common');

async function generate(values, positionals) {
  if (values.prompt === undefined) throw new Error('pass --prompt TEXT');
  const engine = await loadEngine(values, positionals);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  try {
    let echoed = false; // the prompt is echoed once generation has started, not before a bad flag is caught
    const echoPrompt = () => {
      if (!echoed) process.stdout.write(values.prompt);
      echoed = true;
    };
    const result = await engine.generate(values.prompt, {
      ...samplingOptions(values),
      signal: controller.signal,
      onToken: (t) => {
        echoPrompt();
        process.stdout.write(t.text);
      },
    });
    echoPrompt();
    process.stdout.write('\n');
    process.stderr.write(`${usageLine(result)}\n`);
  } finally {
    await engine.close();
  }
}

module.exports = { generate };
