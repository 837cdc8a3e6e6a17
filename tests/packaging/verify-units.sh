#!/usr/bin/env bash
# Checks the service definitions in packaging/: the systemd units with `systemd-analyze verify`
# (and the values that must agree with the gateway), the launchd plist with python3's plistlib.
#
#   verify-units.sh /path/to/built/drawbridge
#
# Exit 0: all checked; 1: a problem (printed); 77: skipped, systemd-analyze is not installed
# (the plist is still checked first, and a problem there is still a failure).
set -uo pipefail

binary=${1:?usage: verify-units.sh /path/to/built/drawbridge}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
packaging=$(cd "$here/../../packaging" && pwd)
service=$packaging/systemd/drawbridge.service
socket=$packaging/systemd/drawbridge.socket
plist=$packaging/launchd/ai.drawbridge.gateway.plist

failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

# The one value of `key` in a unit file (last assignment wins, as in systemd).
unit_value() {
  sed -n "s/^$2=//p" "$1" | tail -n 1
}

# --- launchd ---
if command -v python3 >/dev/null 2>&1; then
  if ! python3 - "$plist" <<'EOF'; then
import plistlib, sys

path = sys.argv[1]
with open(path, "rb") as f:
    p = plistlib.load(f)
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

env = p.get("EnvironmentVariables", {})
check(p.get("Label") == "ai.drawbridge.gateway", "Label is not ai.drawbridge.gateway")
args = p.get("ProgramArguments", [])
check(len(args) >= 2 and args[-1] == "run", "ProgramArguments does not end with 'run'")
check(p.get("RunAtLoad") is True, "RunAtLoad is not true")
check(p.get("KeepAlive") == {"SuccessfulExit": False},
      "KeepAlive is not {SuccessfulExit: false} (exit 75 must bring the job back, 0 must not)")
# runtime::supervised_exit_pause(launchd) is 1500 ms: the job must outlive ThrottleInterval.
throttle = p.get("ThrottleInterval")
check(isinstance(throttle, int) and 0 < throttle * 1000 < 1500,
      "ThrottleInterval must be under the gateway's 1.5 s pause before a supervised exit")
check(env.get("DRAWBRIDGE_SUPERVISOR") == "launchd", "DRAWBRIDGE_SUPERVISOR is not launchd")
exit_timeout = p.get("ExitTimeOut")
check(isinstance(exit_timeout, int)
      and env.get("DRAWBRIDGE_STOP_TIMEOUT_MS") == str(exit_timeout * 1000),
      "DRAWBRIDGE_STOP_TIMEOUT_MS does not match ExitTimeOut")
check(p.get("StandardOutPath") and p.get("StandardErrorPath"), "no StandardOut/ErrorPath")
for problem in problems:
    print(f"{path}: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    fail "$plist"
  else
    echo "ok: $plist"
  fi
  if command -v plutil >/dev/null 2>&1; then
    plutil -lint "$plist" || fail "plutil -lint $plist"
  fi
else
  echo "skip: python3 is not installed, $plist not checked"
fi

# --- systemd: values the gateway relies on ---
[[ $(unit_value "$service" Type) == notify ]] || fail "$service: Type is not notify"
[[ $(unit_value "$service" NotifyAccess) == all ]] ||
  fail "$service: NotifyAccess is not all (a re-exec successor reports READY and MAINPID)"
[[ " $(unit_value "$service" RestartForceExitStatus) " == *" 75 "* ]] ||
  fail "$service: RestartForceExitStatus does not include 75"
[[ " $(unit_value "$service" RestartPreventExitStatus) " == *" 78 "* ]] ||
  fail "$service: RestartPreventExitStatus does not include 78"
stop_sec=$(unit_value "$service" TimeoutStopSec)
stop_ms=$(sed -n 's/^Environment=DRAWBRIDGE_STOP_TIMEOUT_MS=//p' "$service" | tail -n 1)
if [[ $stop_sec =~ ^([0-9]+)s$ ]]; then
  [[ $stop_ms == $((BASH_REMATCH[1] * 1000)) ]] ||
    fail "$service: DRAWBRIDGE_STOP_TIMEOUT_MS=$stop_ms does not match TimeoutStopSec=$stop_sec"
else
  fail "$service: TimeoutStopSec=$stop_sec is not in whole seconds (N s)"
fi
[[ $(unit_value "$socket" FileDescriptorName) == gateway ]] ||
  fail "$socket: FileDescriptorName is not gateway (the name the gateway takes)"
[[ $(unit_value "$socket" Service) == drawbridge.service ]] ||
  fail "$socket: Service is not drawbridge.service"

# --- systemd-analyze verify ---
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if ((failed)); then exit 1; fi
  echo "skip: systemd-analyze is not installed; the systemd units were not verified"
  exit 77
fi
if [[ ! -x $binary ]]; then
  fail "$binary is not an executable (pass the built drawbridge)"
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-units-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$service" "$socket" "$work/"
# verify checks that ExecStart= is executable: point it at the built binary.
grep -q '^ExecStart=/usr/local/bin/drawbridge ' "$work/drawbridge.service" ||
  fail "$service: ExecStart= does not start with /usr/local/bin/drawbridge"
sed -i "s#^ExecStart=/usr/local/bin/drawbridge #ExecStart=$binary #" "$work/drawbridge.service"

options=(--man=no)
if systemd-analyze --help 2>&1 | grep -q -- '--recursive-errors'; then
  options+=(--recursive-errors=no)  # errors in units we merely depend on are not ours
fi
output=$(systemd-analyze verify "${options[@]}" "$work/drawbridge.service" \
  "$work/drawbridge.socket" 2>&1)
rc=$?
ours=$(grep -E "drawbridge\.(service|socket)|$work" <<<"$output" || true)
if [[ -n $ours ]]; then
  echo "$ours" >&2
  fail "systemd-analyze verify reports problems in our units"
elif ((rc != 0)); then
  # Nothing about our units: the environment stopped verify (no /proc, a broken system unit).
  echo "$output"
  if ((failed)); then exit 1; fi
  echo "skip: systemd-analyze verify failed ($rc) without naming our units"
  exit 77
fi

if ((failed)); then exit 1; fi
echo "ok: $service, $socket ($(systemd-analyze --version | head -n 1))"
