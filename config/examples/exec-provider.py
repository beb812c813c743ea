#!/usr/bin/env python3
"""An `exec` provider for keyrot: a small key service kept in one JSON file.

keyrot runs it once per call with one JSON request on stdin and reads one JSON
answer on stdout (protocol: docs/providers.md). It stands in for whatever
system you need to rotate keys in: replace the functions below with calls to
that system's API or CLI, and keep the contract:
  - the new secret goes to stdout only (never a log, never stderr);
  - `issue` records the rotation id (`tag`) so `find_tagged` can find a key
    an interrupted rotation created, and keyrot can revoke it;
  - exit 0 on success; 75 for "try again later"; 65 (bad data), 77 (no
    permission) or 78 (bad config) for failures a retry will not fix.

Usage in keyrot.toml:
  [[provider]]
  name = "legacy"
  type = "exec"
  command = ["/usr/local/lib/keyrot/exec-provider.py", "/var/lib/legacy-keys"]
  operations = ["list", "issue", "verify", "revoke", "find_tagged"]
"""
import datetime
import fcntl
import hashlib
import json
import os
import secrets
import sys


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(t):
    return t.isoformat().replace("+00:00", "Z")


def key_view(k):
    return {
        "id": k["id"],
        "name": k["name"],
        "scopes": k["scopes"],
        "created_at": k["created_at"],
        "expires_at": k["expires_at"],
        "tags": {"keyrot_rotation": k["tag"]} if k.get("tag") else {},
    }


def main():
    if len(sys.argv) != 2:
        print("usage: exec-provider.py STATE_DIR", file=sys.stderr)
        return 64
    state_dir = sys.argv[1]
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "keys.json")
    req = json.load(sys.stdin)
    with open(os.path.join(state_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = json.load(open(path)) if os.path.exists(path) else []
        live = [k for k in keys if not k.get("revoked")]
        op = req["op"]
        if op == "list":
            answer = {"keys": [key_view(k) for k in live]}
        elif op == "find_tagged":
            answer = {"keys": [key_view(k) for k in live if k.get("tag") == req["tag"]]}
        elif op == "issue":
            secret = "lgc_" + secrets.token_urlsafe(32)
            key = {
                "id": "lgc-" + secrets.token_hex(6),
                "name": req["name"],
                "scopes": req["scopes"],
                "created_at": iso(now()),
                "expires_at": req["expires_at"],
                "tag": req["tag"],
                # Only a hash is kept: the secret exists once, in keyrot.
                "sha256": hashlib.sha256(secret.encode()).hexdigest(),
            }
            keys.append(key)
            answer = dict(key_view(key), secret=secret)
        elif op == "verify":
            digest = hashlib.sha256(req["secret"].encode()).hexdigest()
            if not any(k["id"] == req["id"] and k["sha256"] == digest for k in live):
                print(f"key {req['id']} does not accept this secret", file=sys.stderr)
                return 75
            answer = {}
        elif op == "revoke":
            for k in keys:
                if k["id"] == req["id"]:
                    k["revoked"] = iso(now())
            answer = {}
        else:
            print(f"unknown op {op!r}", file=sys.stderr)
            return 64
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(keys, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
