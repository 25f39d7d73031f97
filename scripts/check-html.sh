#!/usr/bin/env bash
# Checks `cusim replay --html` in a real browser: renders the R1 legacy
# minimal schedule (and a run with a lock wait), loads the pages in headless
# Chromium, checks the rendered DOM, and takes a screenshot.
#
#   scripts/check-html.sh            # pages and screenshot in a temporary folder
#   CHECK_HTML_OUT=DIR scripts/check-html.sh   # ... in DIR, kept
#
# Uses $CHROMIUM, else /usr/bin/chromium or Google Chrome, else installs
# Debian's `chromium` package.
# Uses $CUSIM_BIN when set (the test command passes the binary it built);
# else builds target/release/cusim when it is missing or older than the
# sources.
# Exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cusim="${CUSIM_BIN:-$target/release/cusim}"
chromium="${CHROMIUM:-}"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# (a) Chromium: $CHROMIUM, or one on the machine, or Debian's package.
if [ -z "$chromium" ]; then
    for candidate in /usr/bin/chromium /usr/bin/google-chrome /usr/bin/google-chrome-stable; do
        if [ -x "$candidate" ]; then
            chromium="$candidate"
            break
        fi
    done
fi
if [ -z "$chromium" ]; then
    echo "installing chromium (Debian package)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    install_chromium() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
    # The package lists may be current already; refresh them only if needed.
    if ! install_chromium; then
        $sudo apt-get update -qq
        install_chromium
    fi
    chromium=/usr/bin/chromium
fi
[ -x "$chromium" ] || fail "$chromium is missing (install Debian's chromium package, or set CHROMIUM)"
echo "chromium: $("$chromium" --version 2>/dev/null | head -n 1)"

# (b) The binary, then the pages.
if [ -n "${CUSIM_BIN:-}" ]; then
    [ -x "$cusim" ] || fail "CUSIM_BIN=$cusim is not an executable"
elif [ ! -x "$cusim" ] || [ -n "$(find src sim/src pg/src Cargo.toml sim/Cargo.toml Cargo.lock -newer "$cusim" -print -quit)" ]; then
    echo "building $cusim"
    cargo build --release -p cusim-sim --bin cusim
fi

out="${CHECK_HTML_OUT:-}"
if [ -z "$out" ]; then
    out="$(mktemp -d)"
fi
mkdir -p "$out"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

scenario=r1-same-id-create
schedule=1.1
requests="$(grep -o '"op"' "fixtures/scenarios/$scenario.json" | wc -l)"
page="$out/r1-legacy.html"
wait_page="$out/r1-transactional-wait.html"

render() { # render PAGE EXPECTED_EXIT ARGS...
    local page="$1" expected="$2"
    shift 2
    local status=0
    "$cusim" replay "$@" --html "$page" >"$page.stdout" 2>"$page.stderr" || status=$?
    if [ "$status" -ne "$expected" ]; then
        cat "$page.stderr" >&2
        fail "cusim replay $* exited $status, expected $expected"
    fi
    [ -s "$page" ] || fail "cusim replay $* --html $page wrote nothing"
}
render "$page" 1 --scenario "$scenario" --strategy legacy --schedule "$schedule"
render "$wait_page" 0 --scenario "$scenario" --strategy transactional --schedule 0.1.0.1.1.1.1
echo "rendered $page ($scenario, legacy, schedule $schedule; $requests requests)"
echo "rendered $wait_page ($scenario, transactional, schedule 0.1.0.1.1.1.1: r0 waits for r1)"

headless() {
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars "$@" 2>>"$out/chromium.log"
}

# (c) The DOM as Chromium built it.
check_dom() { # check_dom PAGE -> DOM file
    local dom="${1%.html}.dom.html"
    headless --dump-dom "file://$1" >"$dom" || fail "chromium could not load $1 (see $out/chromium.log)"
    [ -s "$dom" ] || fail "chromium dumped an empty DOM for $1 (see $out/chromium.log)"
    grep -q '<main id="trace">' "$dom" || fail "$dom: no <main id=\"trace\">"
    echo "$dom"
}

dom="$(check_dom "$page")"
lanes="$(grep -o 'class="lane"' "$dom" | wc -l)"
[ "$lanes" -ge "$requests" ] || fail "$dom: $lanes lanes (class=\"lane\"), expected at least $requests"
echo "ok: the DOM has $lanes lanes for $requests requests"
grep -q 'class="violated" data-invariant="no_internal_error"' "$dom" ||
    fail "$dom: no highlighted violation (class=\"violated\" data-invariant=\"no_internal_error\")"
echo "ok: the DOM highlights the violated invariant no_internal_error"
grep -q 'class="box respond error internal violation"' "$dom" ||
    fail "$dom: the failing response is not marked as the violation"
echo "ok: the failing response of r1 is marked"

wait_dom="$(check_dom "$wait_page")"
grep -q 'class="connector wait[^"]*" data-from="0" data-to="1"' "$wait_dom" ||
    fail "$wait_dom: no wait connector from r0 to r1"
grep -q 'id="violations" class="ok"' "$wait_dom" || fail "$wait_dom: no 'no invariant violated' banner"
echo "ok: the wait of r0 for r1 is drawn, and the clean run has the green banner"

if grep -Eq '(src|href)="(https?:)?//' "$page"; then
    fail "$page refers to something on the network"
fi
echo "ok: the page refers to nothing on the network"

# (d) A screenshot.
png="$out/r1-legacy.png"
rm -f "$png"
headless --screenshot="$png" --window-size=1400,1000 "file://$page" >/dev/null ||
    fail "chromium could not take a screenshot (see $out/chromium.log)"
[ -s "$png" ] || fail "$png is empty"
[ "$(head -c 4 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e47" ] || fail "$png is not a PNG"
echo "ok: screenshot $png ($(wc -c <"$png") bytes)"
echo "all HTML checks passed; pages and screenshot in $out"
