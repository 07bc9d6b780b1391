#!/usr/bin/env python3
"""A Hugging Face Hub + ModelScope server on loopback for tests (standard library only).

It speaks the shapes of hub-protocols.md: HF revision info, the recursive tree listing paged by `Link`,
/resolve with a relative 307 for regular files and an absolute 302 to a "CDN" on another host name
(localhost vs 127.0.0.1, so a leaked token is detected) for LFS files, Range; ModelScope revisions, file list
with Sha256 and downloads. Faults are injected through POST /_control.

Usage: fake_hub.py --port-file PATH [--token TOKEN]
Control (JSON bodies):
  POST /_control/repo   {"repo": "org/name", "files": {"path": "text" | {"size": N, "seed": S}}}  new commit on main
  POST /_control/faults [{"path": "substring", "kind": "drop|status|429|stall|corrupt|changed", "times": N,
                          "status": 503, "after": BYTES, "seconds": S}]
       hostile hubs (DESIGN §9, every field a hub says is checked):
         {"kind": "trickle", "path": P, "bytes": B, "interval": S}   the body comes B bytes every S seconds
         {"kind": "badrange", "path": P, "shift": N}                   206 starting N bytes past the asked start
         {"kind": "tree_entry" | "ms_entry", "path": FILE, "set": {field: value, ...}}  (value null: key removed)
         {"kind": "revision_info", "set": {...}}                        patches the HF revision info
         {"kind": "tree_raw", "body": TEXT}                             the tree page is TEXT
         {"kind": "tree_link", "mode": "loop" | "endless"}             Link rel="next" back to page 1 / forever on
         {"kind": "redirect", "path": "resolve:FILE", "location": L}    /resolve answers 302 to L, where
            {other} is the port of a second listener (same handlers), {repo} {sha} {file} the request's
  GET  /_control/stats  {"bytes_served": {path: n}, "requests": [...], "auth_leaks": n, "other_port": port}
"""
import argparse
import base64
import hashlib
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
REPOS = {}      # repo -> {"commits": [sha...], "files": {sha: {path: bytes}}}
FAULTS = []
STATS = {"bytes_served": {}, "requests": [], "auth_leaks": 0}
TOKEN = None
PAGE_SIZE = 2
LFS_THRESHOLD = 1024


def content_for(spec):
    if isinstance(spec, str):
        return spec.encode()
    size, seed = spec["size"], spec.get("seed", 0)
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_commit(repo, files):
    with LOCK:
        entry = REPOS.setdefault(repo, {"commits": [], "files": {}})
        parent = entry["commits"][-1] if entry["commits"] else ""
        sha = hashlib.sha1((parent + json.dumps(sorted(files))).encode() + os.urandom(8)).hexdigest()
        entry["files"][sha] = {p: content_for(s) for p, s in files.items()}
        entry["commits"].append(sha)
        return sha


CONTENT_FAULTS = ("drop", "status", "429", "stall", "corrupt", "changed", "trickle", "badrange")
OTHER_PORT = None


def take_fault(path, kinds=CONTENT_FAULTS):
    """The first armed fault of one of `kinds` whose path is part of `path`; a use is counted."""
    with LOCK:
        for fault in FAULTS:
            if fault["kind"] in kinds and fault["path"] in path and fault.get("times", 1) != 0:
                if fault.get("times", 1) > 0:
                    fault["times"] = fault.get("times", 1) - 1
                return dict(fault)
    return None


def patch(obj, changes):
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def find_fault(kind, path=None):
    """An armed fault of `kind` (for `path` exactly, when given), not used up."""
    with LOCK:
        for fault in FAULTS:
            if fault["kind"] == kind and (path is None or fault.get("path") == path):
                return dict(fault)
    return None


def is_lfs(data):
    return len(data) >= LFS_THRESHOLD


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # ---- helpers
    def send_json(self, obj, status=200, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error_code(self, status, code, message):
        self.send_json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message})

    def authorized(self):
        if TOKEN is None:
            return True
        return self.headers.get("Authorization") == "Bearer " + TOKEN or \
            ("m_session_id=" + TOKEN) in (self.headers.get("Cookie") or "")

    def find(self, repo, rev):
        entry = REPOS.get(repo)
        if entry is None:
            return None, None
        if rev in ("main", "master"):
            sha = entry["commits"][-1]
        elif rev in entry["files"]:
            sha = rev
        else:
            return entry, None
        return entry, sha

    def serve_content(self, data, logical_path, extra_headers=None):
        fault = take_fault(logical_path)
        if fault and fault["kind"] == "status":
            return self.send_json({"error": "injected"}, fault.get("status", 500))
        if fault and fault["kind"] == "429":
            return self.send_json({"error": "slow down"}, 429, {"Retry-After": str(fault.get("seconds", 1))})
        if fault and fault["kind"] == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if fault and fault["kind"] == "changed":
            data = data + b"changed on the hub"
        start = 0
        rng = self.headers.get("Range")
        status = 200
        if fault and fault["kind"] == "badrange":
            start = int((rng or "bytes=0-")[6:].split("-")[0] or 0) + fault.get("shift", 100)
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(body)
            return
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            if start >= len(data) and len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = len(body)
        if fault and fault["kind"] in ("drop", "stall"):
            limit = min(limit, fault.get("after", len(body) // 2))
        sent = 0
        step = fault.get("bytes", 16) if fault and fault["kind"] == "trickle" else 65536
        try:
            while sent < limit:
                if fault and fault["kind"] == "trickle":
                    self.wfile.flush()
                    time.sleep(fault.get("interval", 0.1))
                chunk = body[sent:min(limit, sent + step)]
                self.wfile.write(chunk)
                sent += len(chunk)
                with LOCK:
                    STATS["bytes_served"][logical_path] = STATS["bytes_served"].get(logical_path, 0) + len(chunk)
                if "slow" in (fault or {}).get("kind", ""):
                    time.sleep(0.01)
            if fault and fault["kind"] == "stall":
                self.wfile.flush()
                time.sleep(fault.get("seconds", 5))
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit < len(body):
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(2)
            except OSError:
                pass

    # ---- routing
    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if self.path == "/_control/repo":
            sha = add_commit(body["repo"], body["files"])
            return self.send_json({"commit": sha})
        if self.path == "/_control/faults":
            with LOCK:
                FAULTS[:] = body
            return self.send_json({"ok": True})
        self.send_json({"error": "unknown"}, 404)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with LOCK:
            STATS["requests"].append({"method": self.command, "path": self.path, "host": self.headers.get("Host"),
                                      "range": self.headers.get("Range")})
        if path == "/_control/stats":
            with LOCK:
                return self.send_json(dict(STATS, other_port=OTHER_PORT))
        parts = path.strip("/").split("/")
        if path.startswith("/_cdn/"):
            # The CDN must never see the hub token (hub-protocols §3.3).
            if self.headers.get("Authorization"):
                with LOCK:
                    STATS["auth_leaks"] += 1
                return self.send_json({"error": "token sent to the CDN"}, 400)
            repo, sha, file_path = parts[1] + "/" + parts[2], parts[3], "/".join(parts[4:])
            data = REPOS[repo]["files"][sha][file_path]
            return self.serve_content(data, file_path)
        if not self.authorized() and not path.startswith("/api/resolve-cache"):
            return self.send_error_code(401, "GatedRepo", "Access to this model is restricted.")
        if path.startswith("/api/v1/models/"):
            return self.modelscope(parts, query)
        if path.startswith("/api/models/"):
            return self.hf_api(parts, query)
        if path.startswith("/api/resolve-cache/models/"):
            repo, sha, file_path = parts[3] + "/" + parts[4], parts[5], "/".join(parts[6:])
            data = REPOS[repo]["files"][sha][file_path]
            return self.serve_content(data, file_path, {"ETag": '"%s"' % git_sha1(data)})
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(parts)
        self.send_error_code(404, "RepoNotFound", "not found")

    def hf_api(self, parts, query):
        repo = parts[2] + "/" + parts[3]
        kind = parts[4] if len(parts) > 4 else "revision"
        rev = parts[5] if len(parts) > 5 else "main"
        entry, sha = self.find(repo, rev)
        if entry is None:
            return self.send_error_code(404, "RepoNotFound", f"Repository Not Found for url: {self.path}")
        if sha is None:
            return self.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = entry["files"][sha]
        if kind == "revision":
            info = {"id": repo, "modelId": repo, "sha": sha, "private": False, "gated": False,
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
            fault = find_fault("revision_info")
            return self.send_json(patch(info, fault["set"]) if fault else info)
        fault = take_fault("tree", ("status",))
        if fault and fault["kind"] == "status":
            return self.send_json({"error": "injected"}, fault.get("status", 500))
        entries, dirs = [], set()
        for p in sorted(files):
            for i in range(1, p.count("/") + 1):
                d = "/".join(p.split("/")[:i])
                if d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": git_sha1(d.encode()), "size": 0, "path": d})
            data = files[p]
            item = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": p}
            if is_lfs(data):
                item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            fault = find_fault("tree_entry", p)
            entries.append(patch(item, fault["set"]) if fault else item)
        raw = find_fault("tree_raw")
        if raw:
            body = raw["body"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        cursor = int(query.get("cursor", "0"))
        page = entries[cursor:cursor + PAGE_SIZE]
        headers = {}
        base = f"http://{self.headers.get('Host')}/api/models/{repo}/tree/{rev}?recursive=True&expand=False&cursor="
        if cursor + PAGE_SIZE < len(entries):
            headers["Link"] = f'<{base}{cursor + PAGE_SIZE}>; rel="next"'
        link = find_fault("tree_link")
        if link and link.get("mode") == "loop":
            headers["Link"] = f'<{base}0>; rel="next"'
        elif link and link.get("mode") == "endless":
            headers["Link"] = f'<{base}{cursor + 1000000}>; rel="next"'
        self.send_json(page, 200, headers)

    def resolve(self, parts):
        repo, rev, file_path = parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:])
        entry, sha = self.find(repo, rev)
        if entry is None:
            return self.send_error_code(404, "RepoNotFound", "Repository Not Found")
        if sha is None:
            return self.send_error_code(404, "RevisionNotFound", "Invalid rev id")
        data = entry["files"][sha].get(file_path)
        if data is None:
            return self.send_error_code(404, "EntryNotFound", "Entry not found")
        redirect = take_fault("resolve:" + file_path, ("redirect",))
        if redirect:
            location = redirect["location"].format(other=OTHER_PORT, repo=repo, sha=sha, file=urllib.parse.quote(file_path))
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = take_fault("resolve:" + file_path, ("mirror",))
        if fault and fault["kind"] == "mirror":
            # A mirror answering with an absolute redirect to the hub itself (hub-protocols §5.1).
            host = self.headers.get("Host")
            self.send_response(308)
            self.send_header("Location", f"http://{host}/{repo}/resolve/{rev}/{file_path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {"X-Repo-Commit": sha, "X-Linked-Size": str(len(data))}
        if is_lfs(data):
            port = self.server.server_address[1]
            headers["X-Linked-Etag"] = '"%s"' % hashlib.sha256(data).hexdigest()
            location = f"http://localhost:{port}/_cdn/{repo}/{sha}/{urllib.parse.quote(file_path)}?X-Amz-Signature=x"
            status = 302
        else:
            headers["ETag"] = '"%s"' % git_sha1(data)
            location = f"/api/resolve-cache/models/{repo}/{sha}/{urllib.parse.quote(file_path)}?etag={git_sha1(data)}"
            status = 307
        self.send_response(status)
        self.send_header("Location", location)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def modelscope(self, parts, query):
        repo = parts[3] + "/" + parts[4]
        entry = REPOS.get(repo)
        if entry is None:
            return self.send_json({"Code": 10010205001, "Message": f"model {repo} not found", "Success": False}, 404)
        tail = parts[5] if len(parts) > 5 else ""
        sha = entry["commits"][-1]
        files = entry["files"][sha]
        if tail == "revisions":
            return self.send_json({"Code": 200, "Success": True, "Data": {"RevisionMap": {
                "Branches": [{"Revision": "master", "CreatedAt": 1700000000}], "Tags": []}}})
        if tail == "repo" and len(parts) > 6 and parts[6] == "files":
            out = []
            for p in sorted(files):
                data = files[p]
                item = {"Name": p.split("/")[-1], "Path": p, "Type": "blob", "Size": len(data),
                        "Sha256": hashlib.sha256(data).hexdigest(), "Revision": sha, "IsLFS": is_lfs(data)}
                fault = find_fault("ms_entry", p)
                out.append(patch(item, fault["set"]) if fault else item)
            return self.send_json({"Code": 200, "Success": True, "Data": {"Files": out}})
        if tail == "repo":
            file_path = query.get("FilePath", "")
            if file_path not in files:
                return self.send_json({"Code": 404, "Message": "file not found", "Success": False}, 404)
            return self.serve_content(files[file_path], file_path)
        self.send_json({"Code": 200, "Success": True, "Data": {"Id": repo, "Name": parts[4]}})


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # injected drops make clients reset connections; that is expected


def main():
    global TOKEN, OTHER_PORT
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    TOKEN = args.token
    # A second origin on the same host (another port): where a hostile redirect sends the token on a hand parser.
    other = QuietServer(("127.0.0.1", 0), Handler)
    OTHER_PORT = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    server = QuietServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
