'use strict';
// `pagedlm chat` as a user meets it: in a real pseudo-terminal (util-linux `script` gives the CLI one, and
// this test types into it and reads the screen), and with stdin a pipe. The test model answers greedily, so
// the same conversation gets the same answer, and the usage line's prompt tokens show what the history held.
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');
const { describeWithModels } = require('../support/models');

const CLI = path.join(__dirname, '..', '..', 'bin', 'pagedlm.js');
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
const describeWithPty = hasScript ? describeWithModels : (title) => describe.skip(`${title} (skipped: util-linux 'script' not found)`, () => test('skipped', () => {}));

const CTRL_C = '\x03';
const CTRL_D = '\x04';
const USAGE = /\[(\d+) prompt \+ (\d+) generated tokens, finish: (\w+)/;

const quote = (text) => `'${text.replace(/'/g, "'\\''")}'`;
// What a terminal shows, without the cursor and erase sequences readline writes, and with plain newlines.
const screenText = (raw) => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r\n?/g, '\n');

/** The CLI in a pseudo-terminal: type() into it, waitFor() what it prints, exited gives the exit code. */
class Terminal {
  constructor(args) {
    const command = `stty cols 200 rows 50; exec ${[process.execPath, CLI, ...args].map(quote).join(' ')}`;
    this.child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.raw = '';
    this.read = 0; // how much of the screen waitFor() has consumed
    this.waiters = new Set();
    this.child.stdout.on('data', (chunk) => {
      this.raw += chunk;
      for (const check of this.waiters) check();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get screen() {
    return screenText(this.raw);
  }

  type(text) {
    this.child.stdin.write(text);
  }

  /** Resolves to the match of `pattern` in what was printed since the last match, once it is there. */
  waitFor(pattern, timeoutMs = 60000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const unread = this.screen.slice(this.read);
        const match = pattern.exec(unread);
        if (!match) return;
        this.read += match.index + match[0].length;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(match);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no ${pattern} on the terminal within ${timeoutMs} ms; it shows:\n${this.screen.slice(this.read)}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Types a message and resolves to { answer, promptTokens, generated, finish } from its streamed answer and usage line. */
  async say(message) {
    this.type(`${message}\r`);
    await this.waitFor(new RegExp(`${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
    const start = this.read;
    const usage = await this.waitFor(USAGE);
    const answer = this.screen.slice(start, this.read - usage[0].length).trim();
    return { answer, promptTokens: Number(usage[1]), generated: Number(usage[2]), finish: usage[3] };
  }

  kill() {
    this.child.kill('SIGKILL');
  }
}

describeWithPty('pagedlm chat in a pseudo-terminal', ['synth-tiny-f16.gguf'], (model) => {
  let terminal;
  afterEach(() => terminal?.kill());

  test('answers stream; the history carries each turn; /reset forgets it; Ctrl-C clears a typed line; Ctrl-D quits', async () => {
    terminal = new Terminal(['chat', '--model', model, '--system', 'You are terse.', '--temperature', '0', '--max-tokens', '8']);
    await terminal.waitFor(/Ctrl-C stops an answer\.\n> /);
    const first = await terminal.say('Hello there');
    expect(first.generated).toBeGreaterThan(0);
    expect(first.generated).toBeLessThanOrEqual(8);
    expect(first.answer.length).toBeGreaterThan(0);
    await terminal.waitFor(/> /);

    // The second prompt holds the system prompt, the first question and its answer, then the new question.
    const second = await terminal.say('And then?');
    expect(second.promptTokens).toBeGreaterThan(first.promptTokens + first.generated);

    terminal.type('/reset\r');
    await terminal.waitFor(/\[conversation reset\]\n> /);
    terminal.type('some half-typed text');
    terminal.type(CTRL_C);
    const again = await terminal.say('Hello there');
    // Only the system prompt survived the reset, and the cleared text never reached the model.
    expect(again).toEqual(first);

    terminal.type(CTRL_D);
    expect(await terminal.exited).toBe(0);
  });

  test('Ctrl-C stops a long answer and returns to the prompt, the next turn is answered, Ctrl-C at an empty prompt quits', async () => {
    // An answer runs until the context is full: long enough to be stopped midway, short enough to wait for.
    const long = ['--max-tokens', '4000', '--ignore-eos', '--context', '1024'];
    terminal = new Terminal(['chat', '--model', model, '--system', 'You are terse.', '--temperature', '0', ...long]);
    await terminal.waitFor(/> /);
    terminal.type('Tell me everything\r');
    await terminal.waitFor(/Tell me everything\n\s*\S/); // the answer has started
    terminal.type(CTRL_C);
    await terminal.waitFor(/\[answer stopped\]\n> /);
    expect(terminal.screen).not.toMatch(USAGE);

    // The stopped turn left the history as it was: this first answered turn's prompt is the system prompt and
    // one question, no longer than it is in a fresh conversation.
    const next = await terminal.say('Hello there');
    expect(next.generated).toBeGreaterThan(0);
    const fresh = spawnSync(process.execPath, [CLI, 'chat', '--model', model, '--system', 'You are terse.', '--temperature', '0', '--max-tokens', '1'], {
      input: 'Hello there\n',
      encoding: 'utf8',
    });
    expect(Number(USAGE.exec(fresh.stderr)[1])).toBe(next.promptTokens);

    await terminal.waitFor(/> /);
    terminal.type(CTRL_C);
    expect(await terminal.exited).toBe(0);
  });

  test('Ctrl-D while an answer streams lets it finish, then quits', async () => {
    terminal = new Terminal(['chat', '--model', model, '--temperature', '0', '--max-tokens', '400', '--ignore-eos']);
    await terminal.waitFor(/> /);
    terminal.type('Hello there\r');
    await terminal.waitFor(/Hello there\n\s*\S/);
    terminal.type(CTRL_D);
    await terminal.waitFor(USAGE);
    expect(await terminal.exited).toBe(0);
  });
});

describeWithModels('pagedlm chat with stdin not a terminal', ['synth-tiny-f16.gguf', 'aidreams260K.gguf'], (model, smallContextModel) => {
  const chat = (args, input) => spawnSync(process.execPath, [CLI, 'chat', ...args], { input, encoding: 'utf8', timeout: 60000 });

  test('each line is a turn and each answer one line of stdout; /reset and /exit work; the history grows', () => {
    const run = chat(['--model', model, '--temperature', '0', '--max-tokens', '6'], 'Hello there\nAnd then?\n/reset\nHello there\n/exit\nnever read\n');
    expect(run.status).toBe(0);
    const answers = run.stdout.split('\n');
    expect(answers).toHaveLength(4); // three answers and the final newline
    expect(answers[0].length).toBeGreaterThan(0);
    expect(answers[2]).toBe(answers[0]);
    const usages = [...run.stderr.matchAll(new RegExp(USAGE, 'g'))].map((m) => ({ prompt: Number(m[1]), generated: Number(m[2]) }));
    expect(usages).toHaveLength(3);
    expect(usages[1].prompt).toBeGreaterThan(usages[0].prompt + usages[0].generated);
    expect(usages[2]).toEqual(usages[0]);
  });

  test('a turn that fails is reported, the next is answered, and the exit status is 1', () => {
    const run = chat(['--model', smallContextModel, '--temperature', '0', '--max-tokens', '4'], `${'word '.repeat(200)}\nhi\n`);
    expect(run.stderr).toMatch(/pagedlm: the newest turn alone takes \d+ tokens, more than the \d+ a prompt may have here.*\(ERR_CONTEXT_OVERFLOW\); \/reset starts a new conversation/);
    expect(run.stderr).toMatch(USAGE);
    expect(run.status).toBe(1);
  });
});
