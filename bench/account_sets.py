#!/usr/bin/env python3
# Usage: bench/account_sets.py target/release/quotawatch 10000 [DIR]
"""Account sets at scale: a file set of N members, release binary, dry run.
Prints start-to-ready, start-to-every-member-watched, idle RSS, the refresh
that adds and removes 1% (read, parse, build, swap: took_ms from the log),
and RSS after 5 reloads and 60 listings of /api/v1/accounts."""
import json, os, signal, subprocess, sys, time, urllib.request

BIN = sys.argv[1]
N = int(sys.argv[2])
d = os.path.join(sys.argv[3] if len(sys.argv) > 3 else "target/bench-sets", f"n{N}")
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):
    os.remove(os.path.join(d, f))
members = lambda lo, hi: [f"wx{i:016x}" for i in range(lo, hi)]
def write(lst):
    tmp = f"{d}/m.json.tmp"
    with open(tmp, "w") as f:
        json.dump(lst, f)
    os.rename(tmp, f"{d}/m.json")
write(members(1, N + 1))
open(f"{d}/q.toml", "w").write(f'''[daemon]
listen = "127.0.0.1:0"
state = "{d}/ledger.db"
[policy]
dry_run = true
[accounts.platform]
appid = "wx00000000000000c0"
kind = "component"
secret = "s"
[account_sets.merchants]
component = "platform"
from = "file"
file = "{d}/m.json"
token_file = "/run/tokens/{{appid}}"
''')
def events(message):
    """The daemon's JSON log lines with this message, so far."""
    for line in open(f"{d}/log"):
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("message") == message:
            yield v
log = open(f"{d}/log", "w")
t0 = time.monotonic()
p = subprocess.Popen([BIN, "--config", f"{d}/q.toml", "run"], stderr=log, stdout=subprocess.DEVNULL,
                     env={"PATH": os.environ["PATH"], "QUOTAWATCH_LOG": "info", **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}})
addr = None
while addr is None:
    for v in events("quotawatch is ready"):
        addr = v["listen"]
    time.sleep(0.005)
ready = time.monotonic() - t0
def readyz():
    return json.load(urllib.request.urlopen(f"http://{addr}/readyz"))
while (readyz()["sets"].get("merchants") or {}).get("members") != N:
    time.sleep(0.005)
watched = time.monotonic() - t0
time.sleep(5)
rss = lambda: int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
idle = rss()
# 1% out, 1% in.
k = N // 100
write(members(1 + k, N + 1 + k))
took = None
deadline = time.monotonic() + 15
while took is None and time.monotonic() < deadline:
    for v in events("Account set's members changed"):
        took = (v.get("took_ms"), v.get("added"), v.get("removed"))
    time.sleep(0.05)
time.sleep(3)
after = rss()
accounts = urllib.request.urlopen(f"http://{addr}/api/v1/accounts").read()
# Issue 21's steady-state figure: 5 reloads, then 60 account listings.
for i in range(5):
    p.send_signal(signal.SIGHUP)
    while sum(1 for _ in events("Configuration reloaded")) <= i:
        time.sleep(0.02)
time.sleep(1)
reloaded = rss()
for _ in range(60):
    urllib.request.urlopen(f"http://{addr}/api/v1/accounts").read()
time.sleep(1)
settled = rss()
p.terminate(); p.wait()
print(f"N={N} ready={ready:.2f}s all_watched={watched:.2f}s idle_rss={idle:.1f}MiB "
      f"refresh_1pct took_ms,added,removed={took} rss_after_refresh={after:.1f}MiB rss_after_5_reloads={reloaded:.1f}MiB rss_then_after_60_listings={settled:.1f}MiB accounts_listed={len(json.loads(accounts)['accounts'])}")
