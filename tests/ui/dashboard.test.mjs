// OpenClaw's own web dashboard (the Control UI of openclaw@2026.9.6, served by drawbridge from
// gateway.controlUi.root) in headless Chromium against the real drawbridge binary: log in,
// chat with a streamed reply, reload, abort a slow turn, open the sessions, channels, config,
// logs and debug pages, change logging.level in the config form, restart drawbridge from its
// CLI while the page is open. Every step fails on an error banner, a console error, a page
// error or a failed HTTP request, and saves a screenshot into $UI_ARTIFACTS/dashboard/.
//   tests/ui/run-node.sh tests/ui/dashboard.test.mjs build/drawbridge
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway } from '../conformance/lib/gateway.mjs';
import { failedRequests, launchBrowser, pageText, unknownMethods, watchPage } from './lib/browser.mjs';
import { agents, artifactsDir, drawbridgeCli, gatewayStatus, need, restartGateway, waitFor } from './lib/common.mjs';
import {
  answered,
  bubbles,
  chatEvents,
  chooseLoggingLevel,
  composer,
  connected,
  problems,
  responses,
  sendChat,
  settled,
  waitForText,
} from './lib/dashboard.mjs';

const art = artifactsDir('dashboard');
const step = { timeout: 45000 };
let gw;
let chrome;
let page;
let watch;
let base;
let sent = false; // the chat step sent its message: the reload step looks for its reply

async function shot(name) {
  if (!page) return;
  try {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no screenshot within 10 s')), 10000);
    });
    await Promise.race([page.screenshot({ path: path.join(art, `${name}.png`) }), late]).finally(() => clearTimeout(timer));
  } catch (e) {
    fs.writeFileSync(path.join(art, `${name}.screenshot-failed.txt`), String(e));
  }
}

// The page must be clean since `mark`; the screenshot is taken whether it is or not.
async function expectClean(name, mark) {
  await settled(page);
  await shot(name);
  const found = await problems(page, watch, mark);
  assert.deepEqual(found, [], `${name}: ${found.length} problem(s) on ${page.url()}`);
}

// A step of the scenario: on failure its screen is saved too (`<file>-failed.png`).
function scenario(title, file, fn, opts = step) {
  it(title, opts, async () => {
    try {
      await fn();
    } catch (e) {
      await shot(`${file}-failed`);
      throw e;
    }
  });
}

// A page of the dashboard, opened by its address with the token in the fragment (as
// `openclaw dashboard` prints it), so that each page is tested on its own.
async function open(route) {
  const mark = watch.mark();
  const res = await page.goto(`${base}${route}#token=${encodeURIComponent(gw.token)}`, { waitUntil: 'load', timeout: 20000 });
  assert.equal(res?.status(), 200, `GET ${route}: HTTP ${res?.status()} (is gateway.controlUi.root served?)`);
  await connected(watch, mark);
  return mark;
}

// The last hello-ok the page received.
function advertisedHello() {
  return watch.log.frames.findLast((e) => e.dir === 'in' && e.frame.payload?.type === 'hello-ok')?.frame.payload;
}

// What chat.history/chat.startup answered when the page asked about its sent runs
// (inputRunIds): the receipts that let it mark a message as delivered.
function receiptsSeen() {
  const asked = watch.log.frames.filter((e) => e.dir === 'out' && /^chat\.(history|startup)$/.test(e.frame.method) && e.frame.params?.inputRunIds);
  if (!asked.length) return 'the page never asked chat.history about its runs (inputRunIds)';
  const ids = new Set(asked.map((e) => e.frame.id));
  const answers = watch.log.frames.filter((e) => e.dir === 'in' && e.frame.type === 'res' && ids.has(e.frame.id));
  const receipts = answers.map((e) => e.frame.payload?.inputReceipts);
  return `${asked.length} chat.history/chat.startup request(s) with inputRunIds; inputReceipts in the answers: ${JSON.stringify(receipts).slice(0, 300)}`;
}

before(async () => {
  gw = await startGateway({
    agents,
    extraConfig: { gateway: { controlUi: { root: need('CONTROL_UI_ROOT') } }, logging: { level: 'info' } },
  });
  base = gw.httpUrl;
  chrome = await launchBrowser();
  page = await chrome.browser.newPage();
  page.setDefaultTimeout(15000);
  watch = await watchPage(page);
});

after(async () => {
  if (watch) {
    fs.writeFileSync(path.join(art, 'frames.jsonl'), watch.log.frames.map((f) => JSON.stringify(f)).join('\n') + '\n');
    const summary = {
      unknownMethods: unknownMethods(watch.log.frames),
      failedRequests: failedRequests(watch.log.frames),
      consoleErrors: watch.log.console,
      pageErrors: watch.log.pageErrors,
      http: watch.log.http,
    };
    fs.writeFileSync(path.join(art, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
    console.log(`# unknown methods the dashboard called: ${summary.unknownMethods.join(' ') || 'none'}`);
  }
  if (gw) fs.writeFileSync(path.join(art, 'drawbridge.log'), gw.stderr());
  await chrome?.close();
  await gw?.stop();
});

describe('OpenClaw Control UI on drawbridge', { concurrency: 1 }, () => {
  scenario('serves the dashboard and logs in through the login gate', '02-login', async () => {
    const mark = watch.mark();
    const res = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 20000 });
    assert.equal(res?.status(), 200, `GET /: HTTP ${res?.status()}: gateway.controlUi.root is not served`);
    const credential = await page.waitForSelector('#login-gate-credential', { visible: true });
    const url = await page.$eval('#login-gate-url', (el) => el.value);
    assert.equal(url.replace(/\/$/, ''), base.replace(/^http/, 'ws'), 'the login gate proposes the page\'s own gateway');
    await shot('01-login-gate');
    await credential.type(gw.token);
    const login = watch.mark();
    await page.click('.login-gate__connect');
    await connected(watch, login);
    await composer(page);
    await expectClean('02-logged-in', mark);
  });

  scenario('sends a message and shows the streamed reply', '03-chat', async () => {
    const mark = watch.mark();
    const text = 'hello from the dashboard';
    const ack = await sendChat(page, watch, text);
    assert.ok(ack?.runId, `chat.send answered without runId: ${JSON.stringify(ack)}`);
    sent = true;
    await waitForText(page, `echo: ${text}`);
    await waitFor('the final chat event', () => chatEvents(watch, mark, ack.runId).some((e) => e.state === 'final'));
    const states = chatEvents(watch, mark, ack.runId).map((e) => e.state);
    assert.ok(states.indexOf('delta') >= 0 && states.indexOf('delta') < states.indexOf('final'), `streamed: ${states}`);
    await waitFor('the run to end in the page', async () => !(await page.$('.chat-send-btn--stop')));
    await settled(page);
    assert.equal(await bubbles(page, 'user', text), 1, 'the sent message is shown once, as the user\'s');
    assert.equal(await bubbles(page, 'assistant', `echo: ${text}`), 1, 'the reply is shown once');
    await expectClean('03-chat-reply', mark);
  });

  scenario('reloads with the history and no "Delivery unconfirmed"', '04-reload', async () => {
    const mark = watch.mark();
    const hello = advertisedHello();
    await page.reload({ waitUntil: 'load', timeout: 20000 });
    // The UI keeps the token for the next load only when hello-ok's snapshot.authMode is "token".
    await connected(watch, mark).catch((e) => {
      throw new Error(`${e.message}; after a reload the page had no token: hello-ok snapshot.authMode ` +
        `was ${JSON.stringify(hello?.snapshot?.authMode)} (the UI keeps the token only when it is "token")`);
    });
    assert.ok(sent, 'the chat step sent no message: there is no reply to find after the reload');
    // The page keeps a sent message in its outbox until chat.history confirms it
    // (inputReceipts); one still unconfirmed after a reload shows "Delivery unconfirmed ·
    // Retry · Discard" (and "Discard" from the start, before the history has loaded).
    const outcome = await waitFor('the reloaded chat to show the reply, confirmed or not', async () => {
      const t = await pageText(page);
      if (/Delivery unconfirmed|Queue paused/.test(t)) return 'unconfirmed';
      return t.includes('echo: hello from the dashboard') && !/\bDiscard\b/.test(t) ? 'confirmed' : false;
    }).catch((e) => {
      const keyOf = (m) => watch.log.frames.findLast((f) => f.dir === 'out' && f.frame.method === m)?.frame.params?.sessionKey;
      throw new Error(`${e.message}; the history was asked for session ${JSON.stringify(keyOf('chat.startup') ?? keyOf('chat.history'))}, ` +
        `the message was sent to ${JSON.stringify(keyOf('chat.send'))} (hello-ok snapshot.sessionDefaults: ` +
        `${JSON.stringify(advertisedHello()?.snapshot?.sessionDefaults)})`);
    });
    await shot('04-reloaded');
    assert.equal(outcome, 'confirmed', `the sent message shows "Delivery unconfirmed" after a reload; ${receiptsSeen()}`);
    const shown = await pageText(page);
    assert.ok(!/\b[1-9]\d* inbox items?\b/.test(shown), `inbox items after a reload: ${shown.match(/\d+ inbox items?/)?.[0]}`);
    await expectClean('04-reloaded', mark);
  });

  scenario('aborts a slow turn with the stop button', '06-abort', async () => {
    const mark = watch.mark();
    const ack = await sendChat(page, watch, 'slow turn from the dashboard');
    await waitForText(page, 'working slowly on: slow turn from the dashboard');
    await shot('05-slow-turn');
    const stop = await page.waitForSelector('.chat-send-btn--stop', { visible: true });
    await stop.click();
    const abort = await answered(watch, mark, 'chat.abort');
    const asked = watch.since(mark).frames.findLast((e) => e.dir === 'out' && e.frame.method === 'chat.abort')?.frame.params;
    assert.equal(abort?.aborted, true, `chat.abort ${JSON.stringify(asked)} answered ${JSON.stringify(abort)}; the run is ` +
      `${ack.runId} on the session chat.send named (${JSON.stringify(watch.since(mark).frames.find((e) => e.frame.method === 'chat.send')?.frame.params?.sessionKey)})`);
    await waitFor('the aborted chat event', () => chatEvents(watch, mark, ack.runId).some((e) => e.state === 'aborted'));
    await waitFor('the stop button to go', async () => !(await page.$('.chat-send-btn--stop')));
    await waitFor('no active run in drawbridge status', async () => (await gatewayStatus(gw)).activeRuns?.length === 0);
    await expectClean('06-aborted', mark);
  });

  const pages = [
    { name: 'sessions', route: '/sessions', methods: ['sessions.list'] },
    { name: 'channels', route: '/settings/channels', methods: ['channels.status'] },
    { name: 'logs', route: '/logs', methods: ['logs.tail'] },
    { name: 'debug', route: '/debug', methods: ['status', 'health', 'diagnostics.lanes', 'last-heartbeat'] },
  ];
  for (const [i, p] of pages.entries()) {
    scenario(`opens the ${p.name} page (${p.route}) without an error`, `${String(7 + i).padStart(2, '0')}-${p.name}`, async () => {
      const mark = await open(p.route);
      const errors = [];
      for (const m of p.methods) await answered(watch, mark, m).catch((e) => errors.push(e.message));
      await settled(page);
      await shot(`${String(7 + i).padStart(2, '0')}-${p.name}`);
      assert.deepEqual(errors, [], `${p.route}: the page's own requests`);
      await expectClean(`${String(7 + i).padStart(2, '0')}-${p.name}`, mark);
    });
  }

  scenario('changes logging.level in the config form and drawbridge applies it', '12-config', async () => {
    const mark = await open('/settings/advanced');
    // The form needs config.schema, and is read-only unless hello-ok advertises config.set.
    const methods = advertisedHello()?.features?.methods ?? [];
    const missing = ['config.schema', 'config.set'].filter((m) => !methods.includes(m));
    assert.deepEqual(missing, [], 'hello-ok features.methods lacks what the config form needs');
    await answered(watch, mark, 'config.schema');
    await settled(page);
    assert.ok(!(await pageText(page)).includes('Schema unavailable'), 'the config page says "Schema unavailable."');
    await shot('11-config');
    const before = (await drawbridgeCli(gw, ['config', 'get', 'logging.level'])).stdout.trim();
    assert.equal(before, 'info');
    const saveMark = watch.mark();
    await chooseLoggingLevel(page, 'debug');
    // The form saves on change; OpenClaw's UI writes with config.set (config.apply/patch elsewhere).
    const wrote = await waitFor('the config write', () => {
      const out = watch.since(saveMark).frames.find((e) => e.dir === 'out' && /^config\.(set|apply|patch)$/.test(e.frame.method));
      return out?.frame.method;
    });
    await answered(watch, saveMark, wrote);
    await waitFor('logging.level "debug" in the config file', () => /"level"\s*:\s*"debug"/.test(fs.readFileSync(gw.configPath, 'utf8')));
    const now = await drawbridgeCli(gw, ['config', 'get', 'logging.level']);
    assert.equal(now.stdout.trim(), 'debug', `drawbridge config get logging.level: ${now.stdout}${now.stderr}`);
    await expectClean('12-config-saved', mark);
  });

  scenario('reconnects after `drawbridge restart` and answers again', '14-restart', async () => {
    await open('/chat/main');
    await composer(page);
    // A mark in the page's window: gone if the page reloads itself instead of reconnecting.
    await page.evaluate(() => {
      window.__beforeRestart = true;
    });
    const mark = watch.mark();
    const said = await restartGateway(gw);
    assert.match(said, /restart/);
    await connected(watch, mark, { timeoutMs: 30000 });
    // Resumed: the chat's history asked for again on the same document. Reloaded: the mark is
    // gone (the UI reloads itself when it takes the gateway for another build).
    const hello = advertisedHello();
    const how = await waitFor('the page to resume the chat or reload itself', async () => {
      const kept = await page.evaluate(() => window.__beforeRestart === true).catch(() => null);
      if (kept === false) return 'reloaded';
      const reloadedHistory = responses(watch, mark, 'chat.startup').length + responses(watch, mark, 'chat.history').length;
      return kept && reloadedHistory > 0 ? 'resumed' : false;
    });
    assert.equal(
      how,
      'resumed',
      'the page reloaded itself after reconnecting: the UI reloads when the gateway\'s version ' +
        `(server.version ${JSON.stringify(hello?.server?.version)}) differs from its own unless hello-ok ` +
        `server.controlUiBuildSource is "configured" (it is ${JSON.stringify(hello?.server?.controlUiBuildSource)})`,
    );
    await composer(page);
    // While the port was closed Chromium logged the failed reconnect attempts: those are
    // expected, and nothing else.
    const meanwhile = watch.since(mark).console.filter((c) => !/WebSocket connection to .* failed/.test(c.text));
    assert.deepEqual(meanwhile, [], 'console errors during the restart');
    const back = watch.mark();
    await shot('13-reconnected');
    const text = 'hello after the restart';
    await sendChat(page, watch, text);
    await waitForText(page, `echo: ${text}`);
    await waitFor('the run to end in the page', async () => !(await page.$('.chat-send-btn--stop')));
    await expectClean('14-after-restart', back);
  });
});
