'use strict';
// Models by name: hf: specs resolved against a fake hub on 127.0.0.1 (test/support/fake-hub.js), downloads
// into a cache folder under os.tmpdir(), resumed, verified, served offline; a hostile hub refused with nothing
// written outside the cache; the CLI's pull / ls / rm.
const { execFile, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const hub = require('../../lib/hub');
const { parseSpec, choose } = require('../../lib/hub/spec');
const { startFakeHub } = require('../support/fake-hub');
const { describeWithModels } = require('../support/models');

const CLI = path.join(__dirname, '..', '..', 'bin', 'pagedlm.js');
const random = (bytes) => crypto.randomBytes(bytes);

// Every file under `dir`, relative, sorted.
function filesUnder(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

let work; // this test's folder: the cache is work/cache, so anything else in work was written outside it
let cacheDir;
beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-hub-'));
  cacheDir = path.join(work, 'cache');
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

const expectNothingOutsideCache = () => expect(fs.readdirSync(work).filter((f) => f !== 'cache')).toEqual([]);

describe('hf: specs', () => {
  test.each([
    ['hf:owner/repo/model.gguf', { owner: 'owner', repo: 'repo', revision: 'main', file: 'model.gguf', quant: null }],
    ['hf:owner/repo/sub/dir/model.gguf', { owner: 'owner', repo: 'repo', revision: 'main', file: 'sub/dir/model.gguf', quant: null }],
    ['hf:owner/repo:Q4_K_M', { owner: 'owner', repo: 'repo', revision: 'main', file: null, quant: 'Q4_K_M' }],
    ['hf:owner/repo@v1.0:q8_0', { owner: 'owner', repo: 'repo', revision: 'v1.0', file: null, quant: 'q8_0' }],
    ['hf:owner/repo@abc123/model.gguf', { owner: 'owner', repo: 'repo', revision: 'abc123', file: 'model.gguf', quant: null }],
    ['hf:owner/repo', { owner: 'owner', repo: 'repo', revision: 'main', file: null, quant: null }],
  ])('%s', (text, expected) => {
    expect(parseSpec(text)).toMatchObject(expected);
  });

  test.each([
    ['owner/repo:Q4_K_M', /does not start with 'hf:'/],
    ['hf:owner', /names no owner\/repo/],
    ['hf:owner/repo/../../etc/passwd.gguf', /'\.\.' segment/],
    ['hf:../repo:Q4_0', /the owner '\.\.' is refused/],
    ['hf:owner/..:Q4_0', /the repository '\.\.' is refused/],
    ['hf:owner/repo@..:Q4_0', /the revision '\.\.' is refused/],
    ['hf:owner/repo/a\\b.gguf', /backslash/],
    ['hf:owner/repo/a\u0000.gguf', /control character/],
    ['hf:owner/repo/model.bin', /not a \.gguf file/],
    ['hf:owner/repo/model.gguf:Q4_0', /quantization 'Q4_0'|not both/],
    ['hf:owner/repo:Q4-K', /quantization 'Q4-K'/],
    ['hf:owner/repo@:Q4_0', /no revision/],
  ])('%j is refused with ERR_HUB_SPEC', (text, message) => {
    expect(() => parseSpec(text)).toThrow(expect.objectContaining({ code: 'ERR_HUB_SPEC', message: expect.stringMatching(message) }));
  });
});

describe('choosing the file of a quantization', () => {
  const spec = (quant) => ({ owner: 'o', repo: 'r', revision: 'main', file: null, quant });
  const listing = [
    'README.md',
    'model-Q4_K.gguf',
    'model-Q4_K_M.gguf',
    'model-Q4_K_M-imatrix.gguf',
    'mmproj-model-Q8_0.gguf',
    'Q8_0/model-Q8_0-00002-of-00002.gguf',
    'Q8_0/model-Q8_0-00001-of-00002.gguf',
    'model-Q6_K-00001-of-00003.gguf', // part 2 and 3 missing
    'model.F16.gguf',
  ];

  test('matches the tag case-insensitively, not inside a longer tag, shortest path first', () => {
    expect(choose(spec('q4_k_m'), listing)).toEqual({ files: ['model-Q4_K_M.gguf'], alternatives: ['model-Q4_K_M-imatrix.gguf'] });
    expect(choose(spec('Q4_K'), listing)).toEqual({ files: ['model-Q4_K.gguf'], alternatives: [] });
    expect(choose(spec('f16'), listing).files).toEqual(['model.F16.gguf']);
  });

  test('a split model brings all its parts, the first one first; a projector is never the model', () => {
    expect(choose(spec('Q8_0'), listing)).toEqual({ files: ['Q8_0/model-Q8_0-00001-of-00002.gguf', 'Q8_0/model-Q8_0-00002-of-00002.gguf'], alternatives: [] });
  });

  test('no match, or an incomplete split set, is ERR_HUB_NO_MATCH naming what there is', () => {
    for (const quant of ['Q6_K', 'IQ2_XS']) {
      expect(() => choose(spec(quant), listing)).toThrow(
        expect.objectContaining({ code: 'ERR_HUB_NO_MATCH', message: expect.stringMatching(/quantizations F16, Q4_K, Q4_K_M, Q8_0; files model\.F16\.gguf, model-Q4_K\.gguf/) }),
      );
    }
  });

  test('a bare repository takes its only model, and asks when there are several', () => {
    expect(choose(spec(null), ['model-Q4_0.gguf', 'mmproj-f16.gguf']).files).toEqual(['model-Q4_0.gguf']);
    expect(() => choose(spec(null), listing)).toThrow(expect.objectContaining({ code: 'ERR_HUB_NO_MATCH', message: expect.stringMatching(/several GGUF models/) }));
  });
});

describe('downloads from a fake hub', () => {
  const model = random(300 * 1024);
  const parts = [random(70 * 1024), random(50 * 1024)];
  let fake;
  const repos = {
    'org/plain': { files: { 'model-Q4_0.gguf': model, 'README.md': Buffer.from('# plain\n') } },
    'org/split': {
      pageSize: 2, // the listing comes in pages
      files: {
        'Q8_0/big-Q8_0-00001-of-00002.gguf': parts[0],
        'Q8_0/big-Q8_0-00002-of-00002.gguf': parts[1],
        'big-Q4_K_M.gguf': random(1000),
      },
    },
    'org/gated': { token: 'hf_secret', files: { 'model.gguf': model } },
    'org/empty': { files: { 'empty.gguf': Buffer.alloc(0) } },
    'org/dropped': { files: { 'model.gguf': { content: model, behaviour: 'drop-after:100000' } } },
    'org/no-range': { files: { 'model.gguf': { content: model, behaviour: 'drop-after:50000' } } },
    'org/wrong-sum': { files: { 'model.gguf': { content: model, sha256: 'ab'.repeat(32) } } },
    'org/longer': { files: { 'model.gguf': { content: model, behaviour: 'longer' } } },
    'org/endless': { files: { 'model.gguf': { content: model, behaviour: 'endless' } } },
    'org/stall': { files: { 'model.gguf': { content: model, behaviour: 'stall' } } },
    'org/loop': { files: { 'model.gguf': { content: model, behaviour: 'redirect-loop' } } },
    'org/evil': {
      files: { 'model.gguf': model },
      extraEntries: [{ type: 'file', path: '../../../escaped.gguf', size: 10, lfs: { oid: 'ab'.repeat(32), size: 10 } }],
    },
    'org/evil-abs': { files: { 'model.gguf': model }, extraEntries: [{ type: 'file', path: '/tmp/escaped.gguf', size: 1 }] },
  };
  beforeAll(async () => {
    fake = await startFakeHub(repos);
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.requests.length = 0;
  });
  const options = (extra) => ({ cacheDir, endpoint: fake.url, token: 'hf_secret', offline: false, ...extra });

  test('a file by path lands in the cache layout through a redirect; the token goes to the hub only', async () => {
    const reports = [];
    const result = await hub.resolveModel('hf:org/plain/model-Q4_0.gguf', options({ onProgress: (p) => reports.push(p) }));
    expect(result.path).toBe(path.join(cacheDir, 'models', 'org', 'plain', 'main', 'model-Q4_0.gguf'));
    expect(fs.readFileSync(result.path).equals(model)).toBe(true);
    expect(filesUnder(cacheDir)).toEqual([path.join('models', 'org', 'plain', 'main', 'model-Q4_0.gguf')]);
    expectNothingOutsideCache();

    const hubRequests = fake.requests.filter((r) => r.server === 'hub');
    const cdnRequests = fake.requests.filter((r) => r.server === 'cdn');
    expect(hubRequests.map((r) => r.url)).toEqual(['/api/models/org/plain/tree/main?recursive=true', '/org/plain/resolve/main/model-Q4_0.gguf']);
    expect(hubRequests.every((r) => r.headers.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdnRequests).toHaveLength(1);
    expect(cdnRequests[0].headers.authorization).toBeUndefined();

    expect(reports[0]).toMatchObject({ bytes: 0, totalBytes: model.length });
    expect(reports.at(-1)).toMatchObject({ bytes: model.length, totalBytes: model.length });
    expect(reports.at(-1).bytesPerSecond).toBeGreaterThan(0);
    for (let i = 1; i < reports.length; i++) expect(reports[i].bytes).toBeGreaterThanOrEqual(reports[i - 1].bytes);

    // Cached: the second resolve reads the listing but downloads nothing.
    fake.requests.length = 0;
    await hub.resolveModel('hf:org/plain/model-Q4_0.gguf', options());
    expect(fake.requests.map((r) => r.url)).toEqual(['/api/models/org/plain/tree/main?recursive=true']);
  });

  test('a gated repository needs the token: without it ERR_HUB_AUTH', async () => {
    await expect(hub.resolveModel('hf:org/gated/model.gguf', options({ token: 'hf_other' }))).rejects.toMatchObject({ code: 'ERR_HUB_AUTH', message: expect.stringMatching(/HTTP 401.*HF_TOKEN/) });
    const result = await hub.resolveModel('hf:org/gated/model.gguf', options());
    expect(fs.readFileSync(result.path).equals(model)).toBe(true);
  });

  test('an empty listed file downloads as an empty file', async () => {
    const result = await hub.resolveModel('hf:org/empty/empty.gguf', options());
    expect(fs.statSync(result.path).size).toBe(0);
    expect(filesUnder(cacheDir)).toEqual([path.join('models', 'org', 'empty', 'main', 'empty.gguf')]);
  });

  test('a quantization of a split model: every part from a paged listing, the first part to load', async () => {
    const result = await hub.resolveModel('hf:org/split:q8_0', options());
    const dir = path.join(cacheDir, 'models', 'org', 'split', 'main', 'Q8_0');
    expect(result.path).toBe(path.join(dir, 'big-Q8_0-00001-of-00002.gguf'));
    expect(result.files).toEqual([result.path, path.join(dir, 'big-Q8_0-00002-of-00002.gguf')]);
    expect(fs.readFileSync(result.files[1]).equals(parts[1])).toBe(true);
    expect(fake.requests.filter((r) => r.url.includes('/tree/'))).toHaveLength(2);
  });

  test('a dropped connection keeps the partial file, and the next run resumes it with a Range request', async () => {
    const dest = path.join(cacheDir, 'models', 'org', 'dropped', 'main', 'model.gguf');
    await expect(hub.resolveModel('hf:org/dropped/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_NETWORK', message: expect.stringMatching(/resume/) });
    expect(fs.existsSync(dest)).toBe(false);
    expect(fs.statSync(`${dest}.incomplete`).size).toBe(100000);

    fake.requests.length = 0;
    const reports = [];
    await hub.resolveModel('hf:org/dropped/model.gguf', options({ onProgress: (p) => reports.push(p) }));
    expect(fake.requests.find((r) => r.server === 'cdn').headers.range).toBe('bytes=100000-');
    expect(fs.readFileSync(dest).equals(model)).toBe(true);
    expect(fs.existsSync(`${dest}.incomplete`)).toBe(false);
    expect(reports.at(-1).bytes).toBe(model.length);
  });

  test('a resume the hub answers with the whole file (200) starts over and still verifies', async () => {
    repos['org/no-range'].files['model.gguf'].behaviour = 'drop-after:50000';
    await expect(hub.resolveModel('hf:org/no-range/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_NETWORK' });
    repos['org/no-range'].files['model.gguf'].behaviour = 'ignore-range';
    const result = await hub.resolveModel('hf:org/no-range/model.gguf', options());
    expect(fs.readFileSync(result.path).equals(model)).toBe(true);
  });

  test('a checksum mismatch is refused and leaves nothing in the cache', async () => {
    await expect(hub.resolveModel('hf:org/wrong-sum/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_CHECKSUM', message: expect.stringMatching(/sha256 [0-9a-f]{64} but the hub's listing says abab/) });
    expect(filesUnder(cacheDir)).toEqual([]);
    expectNothingOutsideCache();
  });

  test('a 404: an unknown repository, revision or file', async () => {
    await expect(hub.resolveModel('hf:org/missing:Q4_0', options())).rejects.toMatchObject({ code: 'ERR_HUB_NOT_FOUND', message: expect.stringMatching(/HTTP 404/) });
    await expect(hub.resolveModel('hf:org/plain@v2:Q4_0', options())).rejects.toMatchObject({ code: 'ERR_HUB_NOT_FOUND' });
    await expect(hub.resolveModel('hf:org/plain/other.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_NOT_FOUND', message: expect.stringMatching(/has no file other\.gguf: it has quantizations Q4_0/) });
    await expect(hub.resolveModel('hf:org/plain:Q5_K_M', options())).rejects.toMatchObject({ code: 'ERR_HUB_NO_MATCH' });
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  test('offline: the cache serves without a request; what it lacks is ERR_HUB_OFFLINE', async () => {
    const online = await hub.resolveModel('hf:org/plain:Q4_0', options());
    fake.requests.length = 0;
    expect((await hub.resolveModel('hf:org/plain:Q4_0', options({ offline: true }))).path).toBe(online.path);
    expect((await hub.resolveModel('hf:org/plain/model-Q4_0.gguf', options({ offline: true }))).fromCache).toBe(true);
    await expect(hub.resolveModel('hf:org/split:Q8_0', options({ offline: true }))).rejects.toMatchObject({ code: 'ERR_HUB_OFFLINE', message: expect.stringMatching(/not in the cache/) });
    expect(fake.requests).toEqual([]);

    process.env.HF_HUB_OFFLINE = '1';
    try {
      expect((await hub.resolveModel('hf:org/plain:Q4_0', options({ offline: undefined }))).fromCache).toBe(true);
      expect(fake.requests).toEqual([]);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
  });

  test('an unreachable hub falls back to the cache, and fails with ERR_HUB_NETWORK when the cache lacks the model', async () => {
    await hub.resolveModel('hf:org/plain:Q4_0', options());
    const closed = await startFakeHub({});
    const deadEndpoint = closed.url;
    await closed.close();
    expect((await hub.resolveModel('hf:org/plain:Q4_0', options({ endpoint: deadEndpoint }))).fromCache).toBe(true);
    await expect(hub.resolveModel('hf:org/split:Q8_0', options({ endpoint: deadEndpoint }))).rejects.toMatchObject({ code: 'ERR_HUB_NETWORK' });
  });

  test('one download per file: a second load in this process waits for it, another live process is ERR_HUB_BUSY', async () => {
    const [first, second] = await Promise.all([1, 2].map(() => hub.resolveModel('hf:org/plain:Q4_0', options())));
    expect(second.path).toBe(first.path);
    expect(fake.requests.filter((r) => r.server === 'cdn')).toHaveLength(1);

    const dest = path.join(cacheDir, 'models', 'org', 'split', 'main', 'big-Q4_K_M.gguf');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const { pid: exited } = spawnSync(process.execPath, ['-e', '']);
    fs.writeFileSync(`${dest}.lock`, `${process.ppid}\n${os.hostname()}\n`); // a live process, not this one
    await expect(hub.resolveModel('hf:org/split:Q4_K_M', options())).rejects.toMatchObject({ code: 'ERR_HUB_BUSY', message: expect.stringMatching(`pid ${process.ppid}`) });
    expect(fs.existsSync(dest)).toBe(false);
    fs.writeFileSync(`${dest}.lock`, `${exited}\n${os.hostname()}\n`); // its process is gone: taken over
    expect((await hub.resolveModel('hf:org/split:Q4_K_M', options())).path).toBe(dest);
    expect(fs.readdirSync(path.dirname(dest))).toEqual(['big-Q4_K_M.gguf']); // the lock went with the download
  });

  test('HF_ENDPOINT and HF_TOKEN are honoured; the token file stands in for HF_TOKEN', () => {
    const tokenFile = path.join(work, 'token');
    fs.writeFileSync(tokenFile, 'hf_from_file\n');
    const env = { HF_ENDPOINT: 'http://127.0.0.1:1/', HF_TOKEN_PATH: tokenFile, PAGEDLM_CACHE_DIR: cacheDir };
    expect(hub.hubOptions({}, env)).toMatchObject({ endpoint: 'http://127.0.0.1:1', token: 'hf_from_file', cacheDir, offline: false });
    expect(hub.hubOptions({}, { ...env, HF_TOKEN: 'hf_env', HF_HUB_OFFLINE: 'yes' })).toMatchObject({ token: 'hf_env', offline: true });
    expect(hub.hubOptions({}, { XDG_CACHE_HOME: '/x/cache', HF_TOKEN_PATH: path.join(work, 'none') }).cacheDir).toBe('/x/cache/pagedlm');
    expect(hub.hubOptions({}, { HF_TOKEN_PATH: path.join(work, 'none') }).cacheDir).toBe(path.join(os.homedir(), '.cache', 'pagedlm'));
    expect(() => hub.hubOptions({ endpoint: 'ftp://hub' })).toThrow(TypeError);
    expect(() => hub.hubOptions({ cacheDr: '/x' })).toThrow(/did you mean 'cacheDir'/);
  });

  describe('a hostile hub is refused, with nothing written outside the cache', () => {
    test('a body longer than announced', async () => {
      await expect(hub.resolveModel('hf:org/longer/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_PROTOCOL', message: expect.stringMatching(/listing says the file has 307200/) });
      expect(filesUnder(cacheDir)).toEqual([]);
      expectNothingOutsideCache();
    });

    test('an endless stream stops at the announced size', async () => {
      await expect(hub.resolveModel('hf:org/endless/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_PROTOCOL', message: expect.stringMatching(/more than the 307200 bytes/) });
      expect(filesUnder(cacheDir)).toEqual([]);
      expectNothingOutsideCache();
    });

    test('a body shorter than announced: the connection closes early', async () => {
      repos['org/dropped'].files['model.gguf'].behaviour = 'drop-after:1000';
      const fresh = await startFakeHub({ 'org/dropped': repos['org/dropped'] });
      try {
        await expect(hub.resolveModel('hf:org/dropped/model.gguf', options({ endpoint: fresh.url }))).rejects.toMatchObject({ code: 'ERR_HUB_NETWORK', message: expect.stringMatching(/after 1000 of 307200 bytes/) });
      } finally {
        await fresh.close();
      }
      expect(filesUnder(cacheDir)).toEqual([path.join('models', 'org', 'dropped', 'main', 'model.gguf.incomplete')]);
      expectNothingOutsideCache();
    });

    test('a stall times out', async () => {
      await expect(hub.resolveModel('hf:org/stall/model.gguf', options({ timeoutMs: 300 }))).rejects.toMatchObject({ code: 'ERR_HUB_NETWORK', message: expect.stringMatching(/no data for 300 ms/) });
      expect(filesUnder(cacheDir)).toEqual([path.join('models', 'org', 'stall', 'main', 'model.gguf.incomplete')]);
      expectNothingOutsideCache();
    });

    test('a redirect loop', async () => {
      await expect(hub.resolveModel('hf:org/loop/model.gguf', options())).rejects.toMatchObject({ code: 'ERR_HUB_PROTOCOL', message: expect.stringMatching(/redirected more than 10 times/) });
      expect(fake.requests.length).toBeLessThanOrEqual(12);
      expect(filesUnder(cacheDir)).toEqual([]);
    });

    test.each([
      ['org/evil', /"\.\.\/\.\.\/\.\.\/escaped\.gguf" is unsafe/],
      ['org/evil-abs', /"\/tmp\/escaped\.gguf" is unsafe: it is absolute/],
    ])('a listing path that leaves the folder (%s)', async (repo, message) => {
      await expect(hub.resolveModel(`hf:${repo}/model.gguf`, options())).rejects.toMatchObject({ code: 'ERR_HUB_PROTOCOL', message: expect.stringMatching(message) });
      expect(filesUnder(cacheDir)).toEqual([]);
      expectNothingOutsideCache();
      expect(fake.requests.some((r) => r.url.includes('resolve'))).toBe(false);
    });
  });

  describe('pagedlm pull, ls, rm', () => {
    const run = (args, env = {}) =>
      promisify(execFile)(process.execPath, [CLI, ...args], {
        env: { ...process.env, HF_ENDPOINT: fake.url, PAGEDLM_CACHE_DIR: cacheDir, HF_TOKEN: '', HF_TOKEN_PATH: path.join(work, 'no-token'), HF_HUB_OFFLINE: '', ...env },
        timeout: 30000,
      }).catch((error) => error);

    test('pull shows progress and prints the path; ls lists with sizes; rm removes, and only inside the cache', async () => {
      const pulled = await run(['pull', 'hf:org/plain:Q4_0']);
      const file = path.join(cacheDir, 'models', 'org', 'plain', 'main', 'model-Q4_0.gguf');
      expect(pulled.stdout).toBe(`${file}\n`);
      expect(pulled.stderr).toMatch(/downloading 300 KiB of 300 KiB \(100\.0%\) at [\d.]+ [KMG]?i?B\/s/);
      expect(pulled.stderr).toMatch(/pulled: hf:org\/plain@main\/model-Q4_0\.gguf/);
      await run(['pull', 'org/split:Q8_0']);

      const listed = await run(['ls']);
      expect(listed.stdout).toMatch(/hf:org\/plain@main\/model-Q4_0\.gguf +300 KiB\n/);
      expect(listed.stdout).toMatch(/hf:org\/split@main\/Q8_0\/big-Q8_0-00002-of-00002\.gguf +50\.0 KiB\n/);
      expect(listed.stdout).toMatch(new RegExp(`420 KiB in ${cacheDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`));

      const outside = path.join(work, 'keep.gguf');
      fs.writeFileSync(outside, 'not the cache');
      const escaped = await run(['rm', 'hf:org/../../keep.gguf']);
      expect(escaped.code).toBe(1);
      expect(escaped.stderr).toMatch(/ERR_HUB_SPEC/);

      const removed = await run(['rm', 'hf:org/plain:Q4_0']);
      expect(removed.stdout).toBe('removed hf:org/plain@main/model-Q4_0.gguf\nfreed 300 KiB\n');
      expect(fs.existsSync(file)).toBe(false);
      expect(fs.existsSync(path.join(cacheDir, 'models', 'org', 'plain'))).toBe(false);
      expect((await run(['rm', 'hf:org/plain'])).stderr).toMatch(/not in the cache .*ERR_HUB_NOT_CACHED/);

      expect((await run(['rm', 'org/split'])).stdout).toMatch(/^removed hf:org\/split\nfreed 120 KiB\n$/);
      expect((await run(['ls'])).stdout).toBe(`no models in ${cacheDir}\n`);
      expect(fs.readFileSync(outside, 'utf8')).toBe('not the cache');
    });

    test('pull offline fails with a code when the cache lacks the model; bad arguments are errors', async () => {
      const offline = await run(['pull', 'hf:org/plain:Q4_0'], { HF_HUB_OFFLINE: '1' });
      expect(offline.code).toBe(1);
      expect(offline.stderr).toMatch(/is not in the cache .* \(ERR_HUB_OFFLINE\)\n$/);
      expect((await run(['pull'])).stderr).toMatch(/takes one model spec/);
      expect((await run(['rm', 'a', 'b'])).stderr).toMatch(/takes one model spec/);
    });
  });

  describeWithModels('Engine.load and Engine.inspect of an hf: spec', ['aidreams260K.gguf'], (modelFile) => {
    const { Engine } = require('../../lib');
    const gguf = fs.readFileSync(modelFile);
    let ggufHub;
    beforeAll(async () => {
      ggufHub = await startFakeHub({ 'karpathy/tinyllamas-gguf': { files: { 'aidreams260K-F32.gguf': gguf } } });
    });
    afterAll(() => ggufHub.close());

    test('downloads, then loads and generates; onProgress reports the download and then the load', async () => {
      const events = [];
      const engine = await Engine.load('hf:karpathy/tinyllamas-gguf:f32', {
        hub: { cacheDir, endpoint: ggufHub.url, offline: false },
        onProgress: (fraction, detail) => events.push({ fraction, ...detail }),
      });
      try {
        const local = await Engine.load(modelFile);
        const [fromHub, fromFile] = await Promise.all([engine, local].map((e) => e.generate('A neural network', { maxTokens: 8, temperature: 0 })));
        await local.close();
        expect(fromHub.tokens).toEqual(fromFile.tokens);
        expect(fromHub.tokens).toHaveLength(8);
      } finally {
        await engine.close();
      }
      const phases = events.map((e) => e.phase);
      const firstLoad = phases.indexOf('load');
      expect(firstLoad).toBeGreaterThan(0);
      expect(phases.slice(0, firstLoad).every((p) => p === 'download')).toBe(true);
      expect(phases.slice(firstLoad).every((p) => p === 'load')).toBe(true);
      expect(events[firstLoad - 1]).toMatchObject({ fraction: 1, bytes: gguf.length, totalBytes: gguf.length });
      expect(events.at(-1).fraction).toBe(1);

      const offline = await Engine.inspect('hf:karpathy/tinyllamas-gguf/aidreams260K-F32.gguf', { hub: { cacheDir, offline: true } });
      expect(offline.architecture).toBe('llama');
    });

    test('a bad hf: spec or hub option is a clear error before anything loads', async () => {
      await expect(Engine.load('hf:karpathy', { hub: { cacheDir } })).rejects.toMatchObject({ code: 'ERR_HUB_SPEC' });
      await expect(Engine.load('hf:a/b:Q4_0', { hub: { cacheDir, offline: 'yes' } })).rejects.toThrow(/hub.offline must be a boolean/);
      await expect(Engine.inspect('hf:a/b:Q4_0', { hub: { cacheDir, offline: true } })).rejects.toMatchObject({ code: 'ERR_HUB_OFFLINE' });
    });
  });
});
