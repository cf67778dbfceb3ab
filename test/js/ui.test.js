'use strict';
// End to end in a browser: the chat page served by the router streams an answer into the page and shows
// tokens/s and the cache hit rate, and with an API key asks for it and sends it. Drives Debian's Chromium
// through playwright-core.
const fs = require('node:fs');
const express = require('express');
const { chromium } = require('playwright-core');
const { Engine } = require('../..');
const { createRouter } = require('../../express');
const { describeWithModels } = require('../support/models');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const describeIfBrowser = fs.existsSync(CHROMIUM) ? describeWithModels : (title) =>
  describe.skip(`${title} (skipped: no Chromium at ${CHROMIUM}; install it (Debian: sudo apt-get install chromium) or set CHROMIUM_PATH)`, () => test('skipped', () => {}));

describeIfBrowser('web chat page', ['synth-tiny-f16.gguf'], (modelPath) => {
  test('streams an answer into the page and shows tokens/s and the cache hit rate', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 1024 });
    const app = express();
    app.use(createRouter(engine, { ui: true, defaultMaxTokens: 32 }));
    const server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.waitForFunction(() => document.getElementById('model').textContent.length > 0);
      for (const question of ['Hello, who are you?', 'Tell me more.']) {
        const answers = await page.locator('.assistant').count();
        await page.fill('#input', question);
        await page.click('#send');
        const answer = page.locator('.assistant').nth(answers);
        await answer.locator('xpath=self::*[@data-done="true"]').waitFor({ timeout: 60000 });
        expect((await answer.textContent()).length).toBeGreaterThan(0);
      }
      expect(await page.textContent('#speed')).toMatch(/tok\/s/);
      await page.waitForFunction(() => /%$/.test(document.getElementById('hitrate').textContent));
      // The second turn resent the first: part of it came from the cache.
      const hitRate = parseFloat(await page.textContent('#hitrate'));
      expect(hitRate).toBeGreaterThan(0);
    } finally {
      await browser.close();
      await new Promise((resolve) => server.close(resolve));
      await engine.close();
    }
  });

  test('with an API key: asks for it once, keeps it for the tab, sends it, and sends no sampling fields', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 1024 });
    const app = express();
    const unauthorized = [];
    const bodies = [];
    app.use((req, res, next) => {
      res.on('finish', () => res.statusCode === 401 && unauthorized.push(req.path));
      next();
    });
    app.use(createRouter(engine, { ui: true, apiKey: 'tab-key', defaultMaxTokens: 16 }));
    const server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    try {
      const page = await browser.newPage();
      page.on('request', (request) => request.method() === 'POST' && bodies.push(JSON.parse(request.postData())));
      const url = `http://127.0.0.1:${server.address().port}/`;
      await page.goto(url);
      // A wrong key is refused and asked for again; the right one opens the page.
      await page.locator('#key-form').waitFor({ state: 'visible' });
      await page.fill('#key', 'wrong-key');
      await page.click('#key-save');
      await page.waitForFunction(() => document.getElementById('key-note').textContent.includes('refused'));
      await page.fill('#key', 'tab-key');
      await page.click('#key-save');
      await page.waitForFunction(() => document.getElementById('model').textContent.length > 0);
      await page.fill('#input', 'Hello');
      await page.click('#send');
      const answer = page.locator('.assistant').first();
      await answer.locator('xpath=self::*[@data-done="true"]').waitFor({ timeout: 60000 });
      expect(await answer.textContent()).not.toMatch(/\[error/);
      expect((await answer.textContent()).length).toBeGreaterThan(0);
      expect(bodies).toHaveLength(1);
      expect(Object.keys(bodies[0]).sort()).toEqual(['messages', 'stream']); // the server's defaults sample

      // A reload in the same tab keeps the key: no second prompt, no further 401.
      const refusals = unauthorized.length;
      await page.reload();
      await page.waitForFunction(() => document.getElementById('model').textContent.length > 0);
      expect(await page.locator('#key-form').isHidden()).toBe(true);
      expect(unauthorized.length).toBe(refusals);
    } finally {
      await browser.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await engine.close();
    }
  });
});
