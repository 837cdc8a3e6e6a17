// What both UI tests share: the paths install.sh found, the artefacts folder, bounded waiting,
// the gateway's config for these tests, and the drawbridge CLI.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through tests/ui/run-node.sh`);
  return v;
}

// Where screenshots, pane captures and the frame logs go: $UI_ARTIFACTS, else run-node.sh's
// default (<build>/ui-artifacts). One sub-folder per test file, emptied at its start.
export function artifactsDir(name) {
  const dir = path.join(need('UI_ARTIFACTS'), name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Polls `probe` until it returns a truthy value, and returns that value; throws after
 * `timeoutMs` with `what` and the last value or error `probe` gave. The pause between probes
 * is short and only spaces out the polling: it is never what the test relies on.
 */
export async function waitFor(what, probe, { timeoutMs = 15000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await sleep(intervalMs);
  }
}

// The agent of both tests: an exec agent (a shell per turn). A message starting with "slow"
// prints one line, then sleeps until the turn is aborted (or its 60 s timeout); any other
// message is answered "echo: <message>" in two streamed lines. The message is the last
// "text" field of the JSON line on stdin (drawbridge writes the keys sorted: the history's
// texts come first).
const agentScript = [
  'IFS= read -r line',
  `t=$(printf '%s\\n' "$line" | sed -n 's/.*"text":"\\([^"]*\\)".*/\\1/p')`,
  'case "$t" in slow*) echo "working slowly on: $t"; exec sleep 60;; esac',
  'echo "echo: $t"',
  'echo "(drawbridge exec agent)"',
].join('\n');

export const agents = {
  main: { type: 'exec', command: ['sh', '-c', agentScript], timeoutMs: 60000 },
};

// Runs the drawbridge CLI against the gateway `gw` (from startGateway); resolves with
// {code, stdout, stderr}, never rejects. Bounded: SIGKILL after `timeoutMs`.
export function drawbridgeCli(gw, args, { timeoutMs = 30000 } = {}) {
  const bin = need('DRAWBRIDGE_BIN');
  const argv = [...args, '--url', gw.url, '--token', gw.token];
  return new Promise((resolve) => {
    execFile(bin, argv, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr });
    });
  });
}

// The gateway's `status` through the CLI, parsed.
export async function gatewayStatus(gw) {
  const r = await drawbridgeCli(gw, ['status', '--json']);
  if (r.code !== 0) throw new Error(`drawbridge status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * Restarts the gateway through `drawbridge restart --wait` (in the same process, as an
 * operator would) and returns the CLI's output. `--delay-ms 0`: the restart begins at once.
 */
export async function restartGateway(gw) {
  const r = await drawbridgeCli(gw, ['restart', '--delay-ms', '0', '--reason', 'ui-test', '--wait', '--timeout', '30'], {
    timeoutMs: 40000,
  });
  if (r.code !== 0) throw new Error(`drawbridge restart failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}
