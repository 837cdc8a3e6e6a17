// The reference client works unchanged: OpenClaw's own Node client
// (@openclaw/gateway-client@2026.9.1), used as its README shows, connects to drawbridge, calls
// health, status, chat.send and chat.history, receives the chat events of its run, and gets the
// same run back when it resends an idempotencyKey. Run through run-node.sh (DRAWBRIDGE_BIN).
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

import { GatewayClient } from '@openclaw/gateway-client';
import { PROTOCOL_VERSION } from '@openclaw/gateway-protocol/version';

import { startGateway } from './lib/gateway.mjs';
import { Checker } from './lib/schema.mjs';

const SESSION = 'conformance';
const MESSAGE = 'hello from the reference client';

const checker = new Checker();
const events = [];
const gaps = [];
const closes = [];
let wake = () => {};
let gw;
let client;
let hello;
let homeBefore;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]);
}

// Resolves with the first event (already received or to come) matching `pred`.
function waitForEvent(pred, ms, what) {
  return withTimeout(
    new Promise((resolve) => {
      const check = () => {
        const hit = events.find(pred);
        if (hit) resolve(hit);
        return hit;
      };
      if (check()) return;
      const prev = wake;
      wake = () => {
        prev();
        check();
      };
    }),
    ms,
    `${what} (events so far: ${JSON.stringify(events)})`,
  );
}

function textOf(message) {
  if (!message) return undefined;
  if (typeof message.content === 'string') return message.content;
  if (Array.isArray(message.content)) {
    return message.content.filter((p) => p?.type === 'text').map((p) => p.text).join('');
  }
  return message.text;
}

const chatOf = (runId, state) => (e) =>
  e.event === 'chat' && e.payload?.runId === runId && (!state || e.payload.state === state);

before(async () => {
  homeBefore = fs.readdirSync(os.homedir());
  gw = await startGateway({ agents: { main: { type: 'echo', delayMs: 50, chunkChars: 3 } } });
});

after(async () => {
  if (client) await client.stopAndWait({ timeoutMs: 5000 }).catch(() => {});
  if (gw) await gw.stop();
});

test('the reference client connects: challenge, connect, hello-ok', { timeout: 20000 }, async () => {
  const connected = Promise.withResolvers();
  client = new GatewayClient({
    url: gw.url,
    token: gw.token,
    deviceIdentity: null, // no device identity: nothing is created or stored
    clientName: 'gateway-client',
    mode: 'backend',
    minProtocol: PROTOCOL_VERSION,
    maxProtocol: PROTOCOL_VERSION,
    requestTimeoutMs: 10000,
    onHelloOk: (h) => connected.resolve(h),
    onConnectError: (err) => connected.reject(err),
    onEvent: (evt) => {
      events.push(evt);
      if (evt.event === 'chat') checker.check('ChatEvent', evt.payload, `chat event ${JSON.stringify(evt)}`);
      wake();
    },
    onGap: (info) => gaps.push(info),
    onClose: (code, reason) => closes.push({ code, reason }),
  });
  client.start();
  hello = await withTimeout(connected.promise, 10000, 'hello-ok');
  assert.equal(hello.type, 'hello-ok');
  assert.equal(hello.protocol, PROTOCOL_VERSION);
  assert.ok(hello.features.methods.includes('chat.send'));
  assert.ok(hello.auth.scopes.includes('operator.admin'), `the client's default scope: ${JSON.stringify(hello.auth)}`);
  checker.check('HelloOk', hello, 'hello-ok');
});

test('health and status', { timeout: 20000 }, async () => {
  const health = await client.request('health', {});
  assert.equal(typeof health, 'object');
  assert.notEqual(health, null);
  const status = await client.request('status', {});
  assert.equal(typeof status, 'object');
  assert.notEqual(status, null);
});

const key = randomUUID();
let finalEvent;

test('chat.send: the final chat event of the run carries the echoed text', { timeout: 20000 }, async () => {
  const ack = await client.request('chat.send', { sessionKey: SESSION, message: MESSAGE, idempotencyKey: key });
  assert.equal(ack.runId, key, `ack: ${JSON.stringify(ack)}`);
  assert.equal(ack.status, 'started');
  finalEvent = await waitForEvent(chatOf(key, 'final'), 10000, 'the final chat event');
  assert.equal(finalEvent.payload.sessionKey, SESSION);
  assert.equal(finalEvent.payload.message?.role, 'assistant');
  assert.equal(textOf(finalEvent.payload.message), MESSAGE);
  const deltas = events.filter(chatOf(key, 'delta'));
  assert.ok(deltas.length >= 2, `deltas streamed before the final (${deltas.length})`);
  assert.equal(deltas.map((e) => e.payload.deltaText).join(''), MESSAGE);
});

function transcriptCounts(history) {
  assert.ok(Array.isArray(history.messages), `history: ${JSON.stringify(history)}`);
  return {
    user: history.messages.filter((m) => m.role === 'user' && textOf(m) === MESSAGE).length,
    assistant: history.messages.filter((m) => m.role === 'assistant' && textOf(m) === MESSAGE).length,
  };
}

test('chat.history holds the user message and the reply', { timeout: 20000 }, async () => {
  const history = await client.request('chat.history', { sessionKey: SESSION });
  assert.equal(history.sessionKey, SESSION);
  assert.deepEqual(transcriptCounts(history), { user: 1, assistant: 1 });
});

test('resending the same idempotencyKey returns the same run, not a second turn', { timeout: 20000 }, async () => {
  const again = await client.request('chat.send', { sessionKey: SESSION, message: MESSAGE, idempotencyKey: key });
  assert.equal(again.runId, key, `resend: ${JSON.stringify(again)}`);
  assert.ok(['in_flight', 'ok'].includes(again.status), `resend status: ${JSON.stringify(again)}`);
  // A barrier instead of a wait: turns of one session run in order, so once a later message of
  // the same session is answered, a second turn for `key` would have answered before it.
  const barrier = randomUUID();
  await client.request('chat.send', { sessionKey: SESSION, message: 'barrier', idempotencyKey: barrier });
  await waitForEvent(chatOf(barrier, 'final'), 10000, 'the final chat event of the barrier');
  const finals = events.filter(chatOf(key, 'final'));
  assert.equal(finals.length, 1, `one final event for ${key}: ${JSON.stringify(finals)}`);
  const history = await client.request('chat.history', { sessionKey: SESSION });
  assert.deepEqual(transcriptCounts(history), { user: 1, assistant: 1 });
});

test('stop: the client closes cleanly; no gaps, no schema violations, nothing in $HOME', { timeout: 20000 }, async () => {
  await client.stopAndWait({ timeoutMs: 5000 });
  client = null;
  assert.deepEqual(gaps, [], 'the client saw no event seq gaps');
  assert.ok(checker.count('ChatEvent') > 0);
  assert.equal(checker.violations.length, 0, checker.report());
  assert.deepEqual(fs.readdirSync(os.homedir()), homeBefore, 'the client wrote nothing in $HOME');
  const exit = await gw.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, 'drawbridge exits 0 on SIGTERM');
});
