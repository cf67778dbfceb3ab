'use strict';
// pagedlm chat: a conversation in the terminal over engine.chat(). Each answer streams as it is generated and
// joins the history the next turn is rendered from. /reset forgets the conversation (the system prompt
// stays); /exit or Ctrl-D quits; Ctrl-C stops the answer being written and returns to the prompt, and at an
// empty prompt quits. With stdin not a terminal, each line is one turn and each answer one line of stdout.

const readline = require('node:readline');
const { loadEngine, samplingOptions, usageLine } = require('./common');

const GREETING = 'Type a message. /reset forgets the conversation, /exit or Ctrl-D quits, Ctrl-C stops an answer.\n';

/** The messages chat() renders: the system prompt, if any, then the turns since the last reset. */
class History {
  constructor(system) {
    this.system = system;
    this.reset();
  }

  reset() {
    this.messages = this.system === undefined ? [] : [{ role: 'system', content: this.system }];
  }

  ask(content) {
    this.messages.push({ role: 'user', content });
  }

  answer(content) {
    this.messages.push({ role: 'assistant', content });
  }

  // A turn without an answer (stopped or failed) leaves no trace, so the next one follows the last answered.
  dropQuestion() {
    this.messages.pop();
  }
}

async function chat(values, positionals) {
  const engine = await loadEngine(values, positionals);
  try {
    await converse(engine, {
      history: new History(values.system),
      sampling: samplingOptions(values),
      input: process.stdin,
      output: process.stdout,
      log: process.stderr,
    });
  } finally {
    await engine.close();
  }
}

async function converse(engine, { history, sampling, input, output, log }) {
  const terminal = Boolean(input.isTTY && output.isTTY);
  const lines = readline.createInterface({ input, output, terminal, prompt: '> ' });
  let answering = null; // the AbortController of the answer being streamed
  const interrupt = () => {
    if (answering) answering.abort();
    else if (lines.line) clearLine(lines);
    else lines.close();
  };
  lines.on('SIGINT', interrupt); // Ctrl-C typed at a terminal (raw mode: no signal is raised)
  process.on('SIGINT', interrupt); // a signal, as Ctrl-C sends it when stdin is a pipe or a file
  // Input can end while an answer streams (Ctrl-D, end of file); prompting then would resume stdin and keep
  // the process alive after the conversation is over.
  let ended = false;
  lines.on('close', () => {
    ended = true;
    if (terminal && !answering) output.write('\n'); // the shell's prompt starts on a line of its own
  });
  const prompt = () => terminal && !ended && lines.prompt();
  if (terminal) output.write(GREETING);
  prompt();
  try {
    for await (const line of lines) {
      const text = line.trim();
      if (text === '/exit') break;
      if (text === '/reset') {
        history.reset();
        if (terminal) log.write('[conversation reset]\n');
      } else if (text) {
        answering = new AbortController();
        await turn(engine, text, { history, sampling, signal: answering.signal, output, log, terminal });
        answering = null;
      }
      prompt();
    }
  } finally {
    process.off('SIGINT', interrupt);
    lines.close();
  }
}

/** One question and its streamed answer; a stopped or failed answer is reported and left out of the history. */
async function turn(engine, question, { history, sampling, signal, output, log, terminal }) {
  history.ask(question);
  try {
    const result = await engine.chat(history.messages, { ...sampling, signal, onToken: (token) => output.write(token.text) });
    output.write('\n');
    if (result.finishReason === 'abort') {
      history.dropQuestion();
      log.write('[answer stopped]\n');
      return;
    }
    history.answer(result.message.content);
    log.write(`${usageLine(result)}\n`);
  } catch (error) {
    history.dropQuestion();
    const hint = error.code === 'ERR_CONTEXT_OVERFLOW' ? '; /reset starts a new conversation' : '';
    log.write(`\npagedlm: ${error.message}${error.code ? ` (${error.code})` : ''}${hint}\n`);
    if (!terminal) process.exitCode = 1;
  }
}

// Ctrl-C with text typed at the prompt clears the text, as a shell does.
function clearLine(lines) {
  lines.write(null, { ctrl: true, name: 'e' });
  lines.write(null, { ctrl: true, name: 'u' });
}

module.exports = { chat };
