// OpenClaw's own terminal UI (`openclaw tui` of openclaw@2026.9.6) in a private tmux server
// against the real drawbridge binary: connect, send and see the reply, /sessions, /agents,
// Esc aborts a slow turn, `drawbridge restart` underneath and a reply after it. A step fails
// on any new line of the TUI that reports a failure ("... failed: unknown method: x", "not
// connected", "error"). Each step's screen is saved into $UI_ARTIFACTS/tui/.
//   tests/ui/run-node.sh tests/ui/tui.test.mjs build/drawbridge
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway } from '../conformance/lib/gateway.mjs';
import { agents, artifactsDir, gatewayStatus, need, restartGateway, waitFor } from './lib/common.mjs';
import { Tmux } from './lib/tmux.mjs';

const art = artifactsDir('tui');
const step = { timeout: 45000 };
let gw;
let tui;
let seen = new Map(); // problem line -> how many times it was on the screen at the last check

// The TUI reports what went wrong as lines in its chat log and status bar.
const problemPattern = /\b(failed|unknown method|not connected|error)\b/i;

// The TUI's own part of the screen: below its header line. (OpenClaw's CLI prints a banner with
// a random tagline before it, which may well say "error".)
function tuiArea(screen) {
  const lines = screen.split('\n');
  const header = lines.findLastIndex((l) => l.startsWith(' openclaw tui - '));
  return header < 0 ? [] : lines.slice(header);
}

function countProblems(screen) {
  const counts = new Map();
  for (const line of tuiArea(screen)) {
    const l = line.trim();
    if (problemPattern.test(l)) counts.set(l, (counts.get(l) ?? 0) + 1);
  }
  return counts;
}

// The problem lines on `screen` that were not there at the last check (the chat log keeps old
// lines on screen: each is reported once, by the step that made it).
function freshProblems(screen) {
  const fresh = [];
  for (const [line, n] of countProblems(screen)) if (n > (seen.get(line) ?? 0)) fresh.push(line);
  return fresh;
}

// Saves the screen as `name`.txt and fails on fresh problem lines.
function expectClean(name) {
  const screen = tui.screen();
  fs.writeFileSync(path.join(art, `${name}.txt`), screen + '\n');
  const fresh = freshProblems(screen);
  seen = countProblems(screen);
  assert.deepEqual(fresh, [], `${name}: the TUI reports a problem`);
}

const occurrences = (screen, text) => screen.split(text).length - 1;

before(async () => {
  gw = await startGateway({ agents });
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drawbridge-ui-tui-home-'));
  // An empty config of its own: OpenClaw warns about a missing one on the screen otherwise.
  fs.mkdirSync(path.join(home, '.openclaw'));
  fs.writeFileSync(path.join(home, '.openclaw', 'openclaw.json'), '{}\n');
  tui = new Tmux();
  tui.start([need('NODE_BIN'), need('OPENCLAW_MJS'), 'tui', '--url', gw.url, '--token', gw.token], {
    HOME: home,
    NO_UPDATE_NOTIFIER: '1',
  });
});

after(async () => {
  if (tui) {
    try {
      fs.writeFileSync(path.join(art, 'last-screen.txt'), tui.screen() + '\n');
    } catch {
      // the server is gone: nothing to save
    }
    tui.kill();
  }
  if (gw) fs.writeFileSync(path.join(art, 'drawbridge.log'), gw.stderr());
  await gw?.stop();
});

describe('OpenClaw terminal UI on drawbridge', { concurrency: 1 }, () => {
  // OpenClaw's CLI takes 5-20 s to start (more on a busy machine): a longer bound here.
  it('connects', { timeout: 75000 }, async () => {
    await tui.waitFor(
      'the TUI to connect (status "connected", or a failure)',
      (s) => /\bconnected \| idle\b/.test(s) || freshProblems(s).length > 0,
      { timeoutMs: 60000 },
    );
    assert.match(tui.screen(), new RegExp(`openclaw tui - ${gw.url.replace(/[.]/g, '\\.')}`));
    expectClean('01-connected');
  });

  it('sends a message and shows the reply', step, async () => {
    tui.type('hello from the tui');
    tui.key('Enter');
    await tui.waitFor('the reply', (s) => s.includes('echo: hello from the tui') || /not connected|message not sent/.test(s));
    await tui.waitFor('the run to end', (s) => /\| idle\s*$/m.test(s) || freshProblems(s).length > 0);
    expectClean('02-reply');
    assert.ok(tui.screen().includes('echo: hello from the tui'), 'the reply is on the screen');
  });

  // A picker overlay: its first line ("Filter: >" / "search: >", drawn over the screen, not
  // always at a line's start) and below it a selected entry ("→ ...") naming `name`.
  const pickerHead = /(Filter|search): >/;
  async function picker(command, name, file) {
    tui.type(command);
    tui.key('Enter');
    const shown = await tui.waitFor(`the ${command} picker listing ${name}`, (s) => {
      const lines = s.split('\n');
      const head = lines.findLastIndex((l) => pickerHead.test(l));
      if (head >= 0 && lines.slice(head + 1).some((l) => new RegExp(`→ .*\\b${name}\\b`).test(l))) return 'listed';
      return freshProblems(s).length ? 'failed' : false;
    });
    fs.writeFileSync(path.join(art, `${file}-picker.txt`), tui.screen() + '\n');
    if (shown === 'listed') {
      tui.key('Escape');
      await tui.waitFor('the picker to close', (s) => !pickerHead.test(s));
    }
    expectClean(file);
    assert.equal(shown, 'listed', `${command}: the picker does not list ${name}`);
  }

  it('/sessions lists the session', step, async () => {
    await picker('/sessions', 'main', '03-sessions');
  });

  it('/agents lists the agent', step, async () => {
    await picker('/agents', 'main', '04-agents');
  });

  it('Esc aborts a slow turn', step, async () => {
    tui.type('slow turn from the tui');
    tui.key('Enter');
    await tui.waitFor('the slow turn to stream', (s) => s.includes('working slowly on: slow turn from the tui') || /not connected|message not sent/.test(s));
    fs.writeFileSync(path.join(art, '05-slow-turn.txt'), tui.screen() + '\n');
    tui.key('Escape');
    await tui.waitFor('"run aborted"', (s) => /run aborted/.test(s));
    await waitFor('no active run in drawbridge status', async () => (await gatewayStatus(gw)).activeRuns?.length === 0);
    await tui.waitFor('the TUI to be idle again', (s) => /\| (aborted|idle)\s*$/m.test(s));
    expectClean('06-aborted');
  });

  it('recovers from `drawbridge restart` and answers again', step, async () => {
    const said = await restartGateway(gw);
    assert.match(said, /restart/);
    await tui.waitFor('the TUI to reconnect', (s) => /gateway reconnected/.test(s), { timeoutMs: 30000 });
    expectClean('07-reconnected');
    tui.type('hello after the restart');
    tui.key('Enter');
    await tui.waitFor('the reply after the restart', (s) => s.includes('echo: hello after the restart') || /not connected|message not sent/.test(s));
    await tui.waitFor('the run to end', (s) => /\| idle\s*$/m.test(s) || freshProblems(s).length > 0);
    expectClean('08-after-restart');
    const screen = tui.screen();
    assert.equal(occurrences(screen, 'echo: hello after the restart'), 1, 'the reply after the restart is shown once');
    assert.equal(occurrences(screen, 'echo: hello from the tui'), 1, 'the reply from before the restart is shown once (history reloaded on reconnect)');
  });
});
