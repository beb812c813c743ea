"""A consumer of an API key as many services are written: it reads its key
file at start and again only on SIGHUP, and calls the API with the key it
holds. Each answer is counted: 401 (the key was revoked or is unknown) is a
failure; anything else means the key authenticated. The counts are written
to a status file after every request (atomically), the PID to a PID file.

usage: consumer.py KEY_FILE URL PID_FILE STATUS_FILE
"""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

key_file, url, pid_file, status_file = sys.argv[1:5]
state = {"key": None, "reloads": 0}


def load(*_):
    with open(key_file) as f:
        state["key"] = json.load(f)["secret"]
    state["reloads"] += 1


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


load()
signal.signal(signal.SIGHUP, load)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
write(pid_file, "%d\n" % os.getpid())
ok = failed = 0
while True:
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + state["key"]})
    try:
        urllib.request.urlopen(req, timeout=5).read()
        ok += 1
    except urllib.error.HTTPError as e:
        if e.code == 401:
            failed += 1
        else:
            ok += 1
    write(status_file, "%d %d %d\n" % (ok, failed, state["reloads"]))
    time.sleep(0.02)
