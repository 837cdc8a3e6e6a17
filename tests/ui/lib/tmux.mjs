// A private tmux server (its own socket, no config file) with one 160x45 window running one
// command: type into it, read its screen, wait for the screen to show something. The server
// is killed by its socket when the test ends, whatever happens, and the command's process with
// it (by the pid tmux reports).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from './common.mjs';

const servers = new Set();
process.on('exit', () => {
  for (const s of servers) s.kill();
});

let count = 0;

export class Tmux {
  constructor() {
    this.socket = `drawbridge-ui-${process.pid}-${++count}`;
    this.target = 'ui';
    this.panePid = null;
    // The socket's folder: the test's temporary folder (run-node.sh removes it), not /tmp.
    this.env = { ...process.env, TMUX_TMPDIR: os.tmpdir() };
    this.socketPath = path.join(os.tmpdir(), `tmux-${process.getuid()}`, this.socket);
  }

  run(...args) {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8', timeout: 10000, env: this.env });
  }

  // Starts the server and the window running `argv` (no shell) with `env` added.
  start(argv, env = {}) {
    servers.add(this);
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    // remain-on-exit: if the command dies, its last screen stays readable for the failure.
    this.run('-f', '/dev/null', 'start-server', ';', 'set-option', '-g', 'remain-on-exit', 'on', ';',
      'new-session', '-d', '-x', '160', '-y', '45', '-s', this.target, 'env', ...vars, ...argv);
    this.panePid = Number(this.run('list-panes', '-t', this.target, '-F', '#{pane_pid}').trim());
  }

  // The visible screen, wrapped lines joined, trailing blanks removed.
  screen() {
    return this.run('capture-pane', '-p', '-J', '-t', this.target)
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n')
      .trimEnd();
  }

  type(text) {
    this.run('send-keys', '-t', this.target, '-l', text);
  }

  key(name) {
    this.run('send-keys', '-t', this.target, name);
  }

  // Waits until `predicate(screen)` is truthy; the error carries the last screen.
  async waitFor(what, predicate, { timeoutMs = 15000 } = {}) {
    let last = '';
    try {
      return await waitFor(what, () => predicate((last = this.screen())), { timeoutMs });
    } catch (e) {
      throw new Error(`${e.message}\n--- the screen:\n${last}\n---`);
    }
  }

  kill() {
    if (!servers.delete(this)) return;
    try {
      execFileSync('tmux', ['-L', this.socket, 'kill-server'], { timeout: 5000, stdio: 'ignore', env: this.env });
    } catch {
      // already gone
    }
    fs.rmSync(this.socketPath, { force: true });
    if (this.panePid) {
      try {
        process.kill(this.panePid, 'SIGKILL');
      } catch {
        // ended with its server
      }
    }
  }
}
