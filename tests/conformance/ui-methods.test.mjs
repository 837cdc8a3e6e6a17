// The methods OpenClaw's terminal UI and dashboard call besides chat (shared/OPENCLAW-CLIENTS.md),
// each answer validated against protocol.schema.json (@openclaw/gateway-protocol@2026.9.1): its
// result definition where the schema has one (SessionsCreateResult, AgentsListResult,
// ModelsListResult, ...), SessionRow for every session shown, and the top-level frame schema for
// everything. The params this test sends are checked against their definitions too.
// Run through run-node.sh, which passes the binary in DRAWBRIDGE_BIN.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { startGateway } from './lib/gateway.mjs';
import { RawConnection } from './lib/raw-ws.mjs';
import { Checker } from './lib/schema.mjs';

const theirs = new Checker();
const ours = new Checker();
let gw;
let conn;

// method -> [params definition, result definition] (null: the schema has none).
const DEFS = {
  'sessions.subscribe': [null, null],
  'sessions.messages.subscribe': ['SessionsMessagesSubscribeParams', null],
  'sessions.list': ['SessionsListParams', null],
  'sessions.describe': ['SessionsDescribeParams', null],
  'sessions.create': ['SessionsCreateParams', 'SessionsCreateResult'],
  'sessions.reset': ['SessionsResetParams', null],
  'sessions.patch': ['SessionsPatchParams', null],
  'agents.list': ['AgentsListParams', 'AgentsListResult'],
  'agent.identity.get': ['AgentIdentityParams', 'AgentIdentityResult'],
  'models.list': ['ModelsListParams', 'ModelsListResult'],
  'commands.list': ['CommandsListParams', 'CommandsListResult'],
  'chat.startup': [null, null],
  'chat.history': ['ChatHistoryParams', null],
  'chat.send': ['ChatSendParams', null],
  'question.list': ['QuestionListParams', 'QuestionListResult'],
  'tasks.list': ['TasksListParams', 'TasksListResult'],
  'progressCard.get': [null, 'ProgressCardGetResult'],
  'sessions.branches.list': [null, 'SessionsBranchesListResult'],
  'sessions.companion.state': [null, 'SessionsCompanionStateResult'],
  'sessions.observer.visibility': [null, 'SessionsObserverVisibilityResult'],
  'update.status': ['UpdateStatusParams', 'UpdateStatusResult'],
  'talk.catalog': [null, 'TalkCatalogResult'],
};

function onFrame(entry) {
  const f = entry.frame;
  const ctx = `frame #${entry.index} (${entry.method ?? f?.event ?? f?.type})`;
  theirs.check('frame', f, ctx);
  if (f?.type !== 'res') return;
  if (f.ok === false) return theirs.check('ErrorShape', f.error, `${ctx}: error`);
  const result = DEFS[entry.method]?.[1];
  if (result) theirs.check(result, f.payload, `${ctx}: ${result}`);
  const rows = entry.method === 'sessions.list' ? f.payload?.sessions : [f.payload?.session ?? f.payload?.entry];
  for (const row of rows ?? []) if (row) theirs.check('SessionRow', row, `${ctx}: SessionRow`);
}

function onSend(frame) {
  ours.check('frame', frame, `sent ${frame.method}`);
  const def = DEFS[frame.method]?.[0];
  if (def) ours.check(def, frame.params, `sent ${frame.method} params`);
}

async function ok(method, params = {}) {
  const res = await conn.request(method, params);
  assert.equal(res.ok, true, `${method}: ${JSON.stringify(res.error)}`);
  return res.payload;
}

function exercise(name, fn) {
  test(name, { timeout: 20000 }, async () => {
    const mark = theirs.violations.length;
    const sent = ours.violations.length;
    await fn();
    assert.equal(ours.violations.length - sent, 0, `this test sent invalid params:\n${ours.report(sent)}`);
    assert.equal(theirs.violations.length - mark, 0, `drawbridge's answers violate the schema:\n${theirs.report(mark)}`);
  });
}

before(async () => {
  gw = await startGateway({ agents: { main: { type: 'echo', delayMs: 20 } } });
  conn = new RawConnection(gw.url, { label: 'ui', onFrame, onSend });
  await conn.opened;
  await conn.waitFor((f) => f?.event === 'connect.challenge', { what: 'connect.challenge' });
  const res = await conn.request('connect', {
    minProtocol: 4,
    maxProtocol: 4,
    client: { id: 'openclaw-tui', version: '2026.9.6', platform: process.platform, mode: 'ui' },
    role: 'operator',
    scopes: ['operator.admin', 'operator.read', 'operator.write', 'operator.approvals'],
    caps: [],
    auth: { token: gw.token },
  });
  assert.equal(res.ok, true, JSON.stringify(res));
  theirs.check('HelloOk', res.payload, 'hello-ok');
  assert.equal(res.payload.snapshot.authMode, 'token');
  assert.equal(res.payload.snapshot.sessionDefaults.defaultAgentId, 'main');
  for (const m of Object.keys(DEFS)) assert.ok(res.payload.features.methods.includes(m), `advertises ${m}`);
});

after(async () => {
  conn?.terminate();
  await gw?.stop();
});

exercise('the TUI gate and the pickers: sessions.subscribe, agents.list, models.list, commands.list', async () => {
  assert.deepEqual(await ok('sessions.subscribe'), { subscribed: true });
  const agents = await ok('agents.list');
  assert.equal(agents.defaultId, 'main');
  assert.deepEqual(agents.agents.map((a) => a.id), ['main']);
  assert.ok((await ok('models.list')).models.length >= 1);
  assert.equal((await ok('agent.identity.get', { agentId: 'main' })).agentId, 'main');
  const commands = (await ok('commands.list', { agentId: 'main', scope: 'text', includeArgs: true })).commands;
  assert.ok(commands.some((c) => c.name === 'restart'));
});

exercise('a chat, then the session in the list, described, with a receipt for the run', async () => {
  const key = `ui-${randomUUID()}`;
  const runId = randomUUID();
  const sub = await ok('sessions.messages.subscribe', { key, includeApprovals: true });
  assert.deepEqual(sub, { subscribed: true, key });
  const ack = await ok('chat.send', { sessionKey: key, message: 'hello ui', idempotencyKey: runId });
  assert.equal(ack.runId, runId);
  await conn.waitFor((f) => f?.event === 'chat' && f.payload?.runId === runId && f.payload.state === 'final', { what: 'final' });
  // The list watcher and the session's watcher each hear that the session changed, once.
  const changed = await conn.waitFor((f) => f?.event === 'sessions.changed' && f.payload?.sessionKey === key, { what: 'sessions.changed' });
  assert.equal(changed.payload.phase, 'message');
  const history = await ok('chat.history', { sessionKey: key, inputRunIds: [runId], limit: 1000 });
  const user = history.messages.find((m) => m.role === 'user');
  assert.equal(user.__openclaw.idempotencyKey, runId);
  assert.deepEqual(history.inputReceipts, [{ runId, state: 'consumed', consumedByEventId: user.__openclaw.id }]);
  const startup = await ok('chat.startup', { sessionKey: key, limit: 100, maxBytes: 100000 });
  assert.equal(startup.messages.length, history.messages.length);
  const list = await ok('sessions.list', { limit: 50 });
  const row = list.sessions.find((s) => s.key === key);
  assert.ok(row, 'the session is listed');
  assert.equal(row.lastMessagePreview, 'hello ui');
  assert.equal((await ok('sessions.describe', { key })).session.key, key);
});

exercise('create, label, reset: what /new and /reset do', async () => {
  const key = `tui-${randomUUID()}`;
  const created = await ok('sessions.create', { key, agentId: 'main', label: 'notes' });
  assert.equal(created.key, key);
  const patched = await ok('sessions.patch', { key, label: 'renamed' });
  assert.equal(patched.entry.label, 'renamed');
  const refused = await conn.request('sessions.patch', { key, thinkingLevel: 'high' });
  assert.equal(refused.ok, false);
  assert.match(refused.error.message, /per-session "thinkingLevel"/);
  const runId = randomUUID();
  await ok('chat.send', { sessionKey: key, message: 'before the reset', idempotencyKey: runId });
  await conn.waitFor((f) => f?.event === 'chat' && f.payload?.runId === runId && f.payload.state === 'final', { what: 'final' });
  await ok('sessions.reset', { key, reason: 'reset' });
  assert.deepEqual((await ok('chat.history', { sessionKey: key })).messages, []);
});

exercise('what drawbridge has none of answers empty, in the schema\'s shape', async () => {
  assert.deepEqual(await ok('question.list'), { questions: [] });
  assert.deepEqual(await ok('tasks.list'), { tasks: [] });
  assert.deepEqual(await ok('plugin.approval.list'), []);
  assert.deepEqual(await ok('exec.approval.list'), []);
  await ok('progressCard.get', { sessionKey: 'main' });
  await ok('sessions.branches.list', { key: 'main' });
  await ok('sessions.companion.state', { key: 'main' });
  await ok('sessions.observer.visibility', { key: 'main', visible: true });
  await ok('update.status');
  await ok('talk.catalog');
});
