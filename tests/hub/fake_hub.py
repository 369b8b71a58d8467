"""A Hugging Face Hub look-alike for tests: stdlib HTTP server, in-memory repos with history.

It speaks the subset of the Hub's HTTP API that `huggingface_hub` (2.4) and `transformers` (5.x)
call for pushing and pulling model repos, so both clients run against it unchanged once
`HF_ENDPOINT` points at `FakeHub.url`:

    POST /api/repos/create                     DELETE /api/repos/delete
    GET  /api/whoami-v2                        POST   /api/validate-yaml
    POST /api/models/{repo}/preupload/{rev}    POST   /api/models/{repo}/commit/{rev}
    POST /api/models/{repo}/branch/{branch}    GET    /api/models/{repo}/refs
    GET  /api/models/{repo}/commits/{rev}      GET    /api/models/{repo}/tree/{rev}[/{path}]
    POST /api/models/{repo}/paths-info/{rev}   GET    /api/models/{repo}[/revision/{rev}]
    HEAD|GET /{repo}/resolve/{rev}/{path}      (X-Repo-Commit, ETag, Content-Length)

Every file is a "regular" upload (inline, base64, in the NDJSON commit): no LFS, no Xet. A commit
is applied atomically or not at all. Errors carry the Hub's `X-Error-Code` / `X-Error-Message`
headers and JSON bodies, so the clients raise their usual exception types
(`RepositoryNotFoundError`, `RevisionNotFoundError`, `EntryNotFoundError`, 401/403 errors).
`fail_next(endpoint, ...)` makes the next call(s) of an endpoint fail, to test interrupted pushes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_TOKENS = {
    "hf_fake_write_token": ("tester", "write"),
    "hf_fake_read_token": ("tester", "read"),
    "hf_fake_other_token": ("someone-else", "write"),
}
DEFAULT_ORGS = {"tester": ["modalzoo-test-org"]}
INITIAL_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's oid and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def history(self, oid: str) -> list[Commit]:
        """Commits reachable from `oid`, newest first."""
        commits = []
        while oid is not None:
            commit = self.commits[oid]
            commits.append(commit)
            oid = commit.parent
        return commits


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FakeHub:
    """In-memory Hub on 127.0.0.1 (port 0 = any free port). Thread-safe; use as a context manager
    or call `start()` / `stop()`."""

    def __init__(self, tokens: dict[str, tuple[str, str]] | None = None, orgs: dict[str, list[str]] | None = None):
        self.tokens = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.orgs = dict(DEFAULT_ORGS if orgs is None else orgs)
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._failures: dict[str, list[tuple[str | None, int, str]]] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ----- test controls -------------------------------------------------------------------------
    def fail_next(
        self, endpoint: str, status: int = 500, message: str = "Internal Error", count: int = 1, repo: str | None = None
    ) -> None:
        """The next `count` calls of `endpoint` ("create", "preupload", "commit", "resolve", "info",
        "tree", "commits", "paths-info", "branch"), on `repo` only when given, answer `status`
        without changing anything. A failing "commit" still receives the whole upload first, as
        a server failing mid-commit would."""
        with self._lock:
            self._failures.setdefault(endpoint, []).extend([(repo, status, message)] * count)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def create(self, repo_id: str, files: dict[str, bytes] | None = None, *, private: bool = False) -> str:
        """Creates (or adds a commit to) `repo_id` directly, as its owner; returns the commit id."""
        with self._lock:
            repo = self.repos.get(repo_id)
            if repo is None:
                repo = self.repos[repo_id] = Repo(repo_id, private=private, created_at=_now())
                self._commit(repo, "main", {".gitattributes": INITIAL_GITATTRIBUTES}, "initial commit", "", repo.namespace)
            if files:
                merged = {**repo.commits[repo.branches["main"]].files, **files}
                self._commit(repo, "main", merged, "seed files", "", repo.namespace)
            return repo.branches["main"]

    def head(self, repo_id: str, branch: str = "main") -> str:
        with self._lock:
            return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            repo = self.repos[repo_id]
            return dict(repo.commits[self._resolve(repo, revision)].files)

    def add_token(self, token: str, user: str, role: str = "write") -> None:
        self.tokens[token] = (user, role)

    # ----- state helpers (called with the lock held) ---------------------------------------------
    def _new_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter))).encode()).hexdigest()

    def _take_failure(self, endpoint: str, repo: str | None) -> None:
        queue = self._failures.get(endpoint, [])
        for index, (only_repo, status, message) in enumerate(queue):
            if only_repo is None or only_repo == repo:
                del queue[index]
                raise HubHTTPError(status, message)

    def _user(self, authorization: str | None) -> tuple[str, str] | None:
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _namespaces(self, user: str) -> set[str]:
        return {user, *self.orgs.get(user, [])}

    def _readable(self, repo_id: str, caller) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and (caller is None or repo.namespace not in self._namespaces(caller[0]))):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _writable(self, repo_id: str, caller) -> Repo:
        if caller is None:
            raise HubHTTPError(401, "You must be authenticated to write to a repository")
        repo = self._readable(repo_id, caller)
        user, role = caller
        if role != "write" or repo.namespace not in self._namespaces(user):
            raise HubHTTPError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision.startswith("refs/heads/") and revision[11:] in repo.branches:
            return repo.branches[revision[11:]]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo.commits:
            return revision
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], title: str, message: str, author: str) -> Commit:
        parent = repo.branches.get(branch)
        oid = self._new_oid(repo.repo_id, parent or "", title, *sorted(f"{p}:{git_blob_oid(c)}" for p, c in files.items()))
        commit = Commit(oid, parent, title, message, author, _now(), files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    # one buffered write per response and TCP_NODELAY: headers and body in one segment, or
    # Nagle's algorithm and delayed ACKs add ~40 ms to every keep-alive request
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    ROUTES = [
        ("GET", r"/api/whoami-v2", "whoami", None),
        ("POST", r"/api/repos/create", "create_repo", "create"),
        ("DELETE", r"/api/repos/delete", "delete_repo", "delete"),
        ("POST", r"/api/validate-yaml", "validate_yaml", None),
        ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", "preupload", "preupload"),
        ("POST", rf"/api/models/{_REPO}/commit/{_REV}", "commit", "commit"),
        ("POST", rf"/api/models/{_REPO}/branch/{_REV}", "create_branch", "branch"),
        ("GET", rf"/api/models/{_REPO}/refs", "refs", "refs"),
        ("GET", rf"/api/models/{_REPO}/commits/{_REV}", "commits", "commits"),
        ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?P<path>/.*)?", "tree", "tree"),
        ("POST", rf"/api/models/{_REPO}/paths-info/{_REV}", "paths_info", "paths-info"),
        ("GET", rf"/api/models/{_REPO}/revision/{_REV}", "model_info", "info"),
        ("GET", rf"/api/models/{_REPO}", "model_info", "info"),
        ("HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", "resolve", "resolve"),
        ("GET", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", "resolve", "resolve"),
    ]

    def log_message(self, format, *args):  # keep test output clean
        pass

    # ----- plumbing ------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.body = self._read_body()
        # the clients quote revisions as one segment ("refs%2Fpr%2F1"): match first, unquote after
        status = 500
        try:
            for route_method, pattern, handler_name, endpoint in self.ROUTES:
                match = re.fullmatch(pattern, split.path)
                if route_method == method and match:
                    params = {k: unquote(v) if v else v for k, v in match.groupdict().items()}
                    if params.get("path"):
                        params["path"] = params["path"].lstrip("/")
                    with self.hub._lock:
                        self.caller = self.hub._user(self.headers.get("Authorization"))
                        if endpoint is not None and endpoint != "commit":
                            self.hub._take_failure(endpoint, params.get("repo"))
                        status = getattr(self, handler_name)(**params)
                    return
            raise HubHTTPError(404, f"no route for {method} {split.path}")
        except HubHTTPError as error:
            status = error.status
            self._send_error(error)
        finally:
            self.hub.requests.append((method, split.path, status))

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _json(self, payload, status: int = 200, headers=None) -> int:
        return self._send(status, json.dumps(payload).encode(), headers=headers)

    def _send_error(self, error: HubHTTPError) -> None:
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers=headers)

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubHTTPError(400, f"invalid JSON body: {error}") from None

    # ----- account -------------------------------------------------------------------------------
    def whoami(self) -> int:
        if self.caller is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        user, role = self.caller
        orgs = [{"name": org, "type": "org"} for org in self.hub.orgs.get(user, [])]
        return self._json(
            {"type": "user", "name": user, "fullname": user, "orgs": orgs,
             "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}}}
        )

    # ----- repos ---------------------------------------------------------------------------------
    def create_repo(self) -> int:
        payload = self._json_body()
        if payload.get("type", "model") != "model":
            raise HubHTTPError(400, "the fake hub only hosts model repositories")
        if self.caller is None:
            raise HubHTTPError(401, "You must be authenticated to create a repository")
        user, role = self.caller
        namespace = payload.get("organization") or user
        name = payload.get("name", "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubHTTPError(400, f"invalid repository name {name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.hub.url}/{repo_id}"
        if role != "write" or namespace not in self.hub._namespaces(user):
            raise HubHTTPError(403, f"You don't have the rights to create a model under the namespace {namespace!r}")
        if repo_id in self.hub.repos:
            return self._json({"error": "You already created this model repo", "url": url}, status=409)
        repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")), created_at=_now())
        self.hub.repos[repo_id] = repo
        self.hub._commit(repo, "main", {".gitattributes": INITIAL_GITATTRIBUTES}, "initial commit", "", user)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self) -> int:
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or (self.caller or ('',))[0]}/{payload.get('name')}"
        self.hub._writable(repo_id, self.caller)
        del self.hub.repos[repo_id]
        return self._json({})

    def validate_yaml(self) -> int:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, flags=re.DOTALL)
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as error:
                return self._json({"errors": [{"message": f"invalid YAML: {error}"}]}, status=400)
            if metadata is not None and not isinstance(metadata, dict):
                return self._json({"errors": [{"message": "the metadata must be a YAML mapping"}]}, status=400)
        return self._json({"warnings": []})

    def create_branch(self, repo: str, rev: str) -> int:
        target = self.hub._writable(repo, self.caller)
        if rev in target.branches:
            raise HubHTTPError(409, f"Reference refs/heads/{rev} already exists")
        start = self._json_body().get("startingPoint") or "main"
        target.branches[rev] = self.hub._resolve(target, start)
        return self._json({})

    def refs(self, repo: str) -> int:
        target = self.hub._readable(repo, self.caller)
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in target.branches.items()]
        return self._json({"branches": branches, "tags": [], "converts": []})

    # ----- writes --------------------------------------------------------------------------------
    def preupload(self, repo: str, rev: str) -> int:
        target = self.hub._writable(repo, self.caller)
        head = target.commits[self.hub._resolve(target, rev)].files if rev in target.branches else {}
        files = []
        for entry in self._json_body().get("files", []):
            existing = head.get(entry["path"])
            files.append(
                {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": git_blob_oid(existing) if existing is not None else None}
            )
        return self._json({"files": files, "commitOid": target.branches.get(rev)})

    def commit(self, repo: str, rev: str) -> int:
        target = self.hub._writable(repo, self.caller)
        if self.query.get("create_pr"):
            raise HubHTTPError(400, "the fake hub does not support pull requests")
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise HubHTTPError(400, f"invalid NDJSON commit payload: {error}") from None
        header = next((line["value"] for line in lines if line.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            raise HubHTTPError(400, "the commit payload needs a header with a summary")
        # the body has arrived; an injected failure now models a server error mid-commit
        self.hub._take_failure("commit", repo)
        if rev not in target.branches:
            raise HubHTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        head = target.branches[rev]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(target.commits[head].files)
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubHTTPError(400, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubHTTPError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            elif key in ("lfsFile", "copiedFile"):
                raise HubHTTPError(400, f"{key} operations are not supported: the fake hub takes regular uploads only")
        commit = self.hub._commit(target, rev, files, header["summary"], header.get("description", ""), self.caller[0])
        return self._json(
            {"commitUrl": f"{self.hub.url}/{repo}/commit/{commit.oid}", "commitOid": commit.oid, "pullRequestUrl": None}
        )

    # ----- reads ---------------------------------------------------------------------------------
    def _entries(self, files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        entries, folders = [], set()
        for path in sorted(files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            if "/" in rest and not recursive:
                folders.add((f"{prefix}/" if prefix else "") + rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folders.add((f"{prefix}/" if prefix else "") + "/".join(parts[:depth]))
            entries.append({"type": "file", "oid": git_blob_oid(files[path]), "size": len(files[path]), "path": path})
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f} for f in sorted(folders)]
        return entries

    def tree(self, repo: str, rev: str, path: str | None = None) -> int:
        target = self.hub._readable(repo, self.caller)
        files = target.commits[self.hub._resolve(target, rev)].files
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        if path and path.strip("/") in files:
            raise HubHTTPError(404, f"{path} is a file, not a folder", "EntryNotFound")
        entries = self._entries(files, path or "", recursive)
        if path and not entries:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound")
        return self._json(entries)

    def paths_info(self, repo: str, rev: str) -> int:
        target = self.hub._readable(repo, self.caller)
        files = target.commits[self.hub._resolve(target, rev)].files
        form = parse_qs(self.body.decode())
        wanted = form.get("paths", []) or self._json_body().get("paths", [])
        entries = []
        for path in wanted:
            if path in files:
                entries.append({"type": "file", "oid": git_blob_oid(files[path]), "size": len(files[path]), "path": path})
            elif any(p.startswith(path.rstrip("/") + "/") for p in files):
                entries.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        return self._json(entries)

    def commits(self, repo: str, rev: str) -> int:
        target = self.hub._readable(repo, self.caller)
        history = target.history(self.hub._resolve(target, rev))
        return self._json(
            [{"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": c.date}
             for c in history]
        )

    def model_info(self, repo: str, rev: str = "main") -> int:
        target = self.hub._readable(repo, self.caller)
        commit = target.commits[self.hub._resolve(target, rev)]
        card = _card_data(commit.files.get("README.md"))
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, content in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=len(content), blobId=git_blob_oid(content))
            siblings.append(sibling)
        tags = list(card.get("tags") or [])
        if card.get("library_name") and card["library_name"] not in tags:
            tags.append(card["library_name"])
        return self._json(
            {"_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "modelId": repo, "author": target.namespace,
             "sha": commit.oid, "private": target.private, "gated": False, "disabled": False, "downloads": 0,
             "likes": 0, "tags": tags, "pipeline_tag": card.get("pipeline_tag"),
             "library_name": card.get("library_name"), "createdAt": target.created_at, "lastModified": commit.date,
             "cardData": card or None, "siblings": siblings}
        )

    def resolve(self, repo: str, rev: str, path: str) -> int:
        target = self.hub._readable(repo, self.caller)
        oid = self.hub._resolve(target, rev)
        content = target.commits[oid].files.get(path)
        headers = {"X-Repo-Commit": oid}
        if content is None:
            error = HubHTTPError(404, "Entry not found", "EntryNotFound")
            self._send(404, json.dumps({"error": error.message}).encode(),
                       headers={**headers, "X-Error-Code": error.code, "X-Error-Message": error.message})
            return 404
        etag = f'"{git_blob_oid(content)}"'
        return self._send(200, content, content_type="application/octet-stream", headers={**headers, "ETag": etag})


def _card_data(readme: bytes | None) -> dict:
    if not readme:
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.decode("utf-8", errors="replace"), flags=re.DOTALL)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
