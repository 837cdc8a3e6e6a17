# The table of bench/peer/chaos_compare.sh: one row a figure, one column a gateway, from the
# chaos.json of each half (bench/chaos/report.cpp). Tab-separated; the script aligns it.
def ms: if . == null then "n/a" elif . >= 10000 then "\(. / 1000 * 10 | round / 10) s"
        elif . >= 1000 then "\(. / 1000 * 100 | round / 100) s" elif . >= 10 then "\(. | round) ms"
        else "\(. * 10 | round / 10) ms" end;
def mib: if . == null then "n/a" else "\(. / 1024 * 10 | round / 10) MiB" end;
def pct(a; p): (a | sort) as $s | if ($s | length) == 0 then null
  else $s[([(($s | length) * p / 100 | ceil) - 1, 0] | max)] end;
def evs(g; f): [g.events[] | select(.kind | f)];
def served(g; f): evs(g; f) as $e | if ($e | length) == 0 then "none"
  else "\($e | length): p50 \(pct($e | map(.readyMs); 50) | ms), max \($e | map(.readyMs) | max | ms)\(
    if ($e | map(select(.ok | not)) | length) > 0 then ", \($e | map(select(.ok | not)) | length) FAILED" else "" end)" end;
def lat(s): if s.n == 0 then "none (n 0)" else "\(s.p50 | ms) / \(s.p95 | ms) / \(s.p99 | ms) (n \(s.n))" end;
def col(f): if . == null then "n/a" else f end;
.drawbridge as $d | .openclaw as $p |
def row(name; f): [name, ($d | col(f)), ($p | col(f))];
["figure", "drawbridge", "OpenClaw 2026.9.6"],
row("events injected, one at a time"; "\(.events | length) in \(.windowS | round) s: \(.events | group_by(.kind) | map("\(length) \(.[0].kind)") | join(", "))"),
row("restart by signal → served again"; served(.; . == "restart-signal")),
row("restart by gateway.restart.request → served again"; served(.; . == "restart-rpc")),
row("restart-class config.patch → served again"; served(.; . == "restart-patch")),
row("hot config.patch → answered"; served(.; . == "hot-patch")),
row("SIGTERM + start → served again"; served(.; . == "term-start")),
row("SIGKILL + start → served again"; served(.; . == "kill-start")),
row("messages sent / acknowledged / checked in the transcripts"; "\(.websocket.sent) / \(.websocket.acked) / \(.websocket.transcriptChecked)"),
row("never answered (lost)"; .websocket as $w | "\($w.transcriptLost)\(if $w.transcriptLost > 0 then ": \(($w.transcriptLostAfterAnError // 0)) after a chat error event, \($w.transcriptLost - ($w.transcriptLostAfterAnError // 0)) without a word; \(($w.transcriptLostNeverAcknowledged // 0)) never acknowledged" else "" end)"),
row("duplicated (a user entry or a reply twice)"; "\(.websocket.transcriptDuplicatedUserEntries + .websocket.transcriptDuplicatedReplies)"),
row("… answered during the run, not only found at the end"; "\(.websocket.finals) of \(.websocket.sent) (\(.websocket.finalMissed) found in the transcript only)"),
row("refused: /healthz probes failed in restarts (of all probes)"; "\(.service.failedOutsideStopsAndKills) (of \(.service.probes))"),
row("… failed in SIGTERM / SIGKILL + start (nothing listens)"; "\(.service.failed - .service.failedOutsideStopsAndKills)"),
row("longest without service (/healthz)"; .service.longestOutageMs | ms),
row("longest a session had no connection"; .websocket.longestDownMs | ms),
row("latency p50 / p95 / p99, quiet lead-in"; lat(.latencyMs.quiet)),
row("latency p50 / p95 / p99, messages that met a restart"; lat(.latencyMs.duringRestarts)),
row("latency p99 / max, all messages"; "\(.latencyMs.all.p99 | ms) / \(.latencyMs.all.max | ms)"),
row("RSS max / at the end (process tree)"; "\(.rssKiB.max | mib) / \(.rssKiB.last | mib)"),
row("drawbridge_chaos verdict"; if .ok then "every guarantee held" else (.breaches | join("; ")) end)
| @tsv
