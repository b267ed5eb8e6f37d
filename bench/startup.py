#!/usr/bin/env python3
"""Binary start to first webhook served (SPEC §8: under 100 ms).

Starts `tale serve` on a fresh database with one story, POSTs to its webhook
every millisecond until one answers 200, and reports the time from spawn to
that answer; the baseline, measured in the same run, is spawn to exit of
`tale --version` (what starting any process costs here). Median of N runs.

    cargo build --release && python3 bench/startup.py [N]
"""
import http.client, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("TALE_BIN", os.path.join(ROOT, "target", "release", "tale"))
STORY = """name: Startup
actions:
  hook:
    type: webhook
    path: start
    secret: startup-secret-1
  shape:
    type: transform
    mode: message_only
    from: hook
    payload: { id: "{{ hook.body.id }}" }
"""

def first_webhook(port, work):
    stories = os.path.join(work, "stories")
    os.makedirs(stories)
    with open(os.path.join(stories, "start.yaml"), "w") as f:
        f.write(STORY)
    t0 = time.perf_counter()
    proc = subprocess.Popen([BIN, "serve", "--stories", stories, "--db", f"sqlite:{work}/t.db",
                             "--listen", f"127.0.0.1:{port}", "--watch", "0s"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TALE_LOG="error"))
    try:
        while time.perf_counter() - t0 < 10:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("POST", "/webhook/start/startup-secret-1", body=b'{"id":1}',
                          headers={"content-type": "application/json"})
                if c.getresponse().status == 200:
                    return time.perf_counter() - t0
            except OSError:
                time.sleep(0.001)
        raise SystemExit("tale serve did not answer within 10 s")
    finally:
        proc.terminate()
        proc.wait()

def version():
    t0 = time.perf_counter()
    subprocess.run([BIN, "--version"], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0

def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    serve, base = [], []
    for i in range(n):
        work = tempfile.mkdtemp(prefix="tale-startup-")
        try:
            base.append(version())
            serve.append(first_webhook(18400 + i, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    s, b = statistics.median(serve), statistics.median(base)
    print(f"start to first webhook served: median {s*1000:.1f} ms over {n} runs "
          f"(min {min(serve)*1000:.1f}, max {max(serve)*1000:.1f})")
    print(f"baseline `tale --version`: median {b*1000:.1f} ms; ratio {s/b:.1f}x")

if __name__ == "__main__":
    main()
