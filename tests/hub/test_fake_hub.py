"""The fake Hub on its own, over raw HTTP (urllib): routes, headers, error codes, atomic commits."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from fake_hub import FakeHub, git_blob_oid

WRITE, READ, OTHER = "hf_fake_write_token", "hf_fake_read_token", "hf_fake_other_token"


@pytest.fixture
def hub():
    with FakeHub() as server:
        yield server


def call(hub, method, path, *, token=WRITE, body=None, content_type="application/json", raw=False):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(hub.url + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request) as response:
            content = response.read()
            return response.status, dict(response.headers), content if raw else (json.loads(content) if content else None)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def commit(hub, repo, files, *, summary="add files", parent=None, token=WRITE, branch="main"):
    header = {"summary": summary, "description": ""}
    if parent:
        header["parentCommit"] = parent
    lines = [{"key": "header", "value": header}]
    lines += [{"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}
              for path, content in files.items()]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return call(hub, "POST", f"/api/models/{repo}/commit/{branch}", body=body, content_type="application/x-ndjson", token=token)


def test_create_repo_namespaces_conflicts_and_auth(hub):
    status, _, body = call(hub, "POST", "/api/repos/create", body={"name": "demo", "type": "model"})
    assert (status, body["url"]) == (200, f"{hub.url}/tester/demo")
    status, _, body = call(hub, "POST", "/api/repos/create", body={"name": "demo", "type": "model"})
    assert status == 409 and body["url"] == f"{hub.url}/tester/demo"  # exist_ok reads the url from a 409
    status, headers, _ = call(hub, "POST", "/api/repos/create", body={"name": "x"}, token="hf_wrong")
    assert status == 401 and headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert call(hub, "POST", "/api/repos/create", body={"name": "x"}, token=READ)[0] == 403
    assert call(hub, "POST", "/api/repos/create", body={"name": "x", "organization": "elsewhere"})[0] == 403
    assert call(hub, "POST", "/api/repos/create", body={"name": "x", "organization": "modalzoo-test-org"})[0] == 200
    assert call(hub, "GET", "/api/whoami-v2")[2]["name"] == "tester"


def test_commit_then_resolve_with_commit_and_etag_headers(hub):
    call(hub, "POST", "/api/repos/create", body={"name": "demo"})
    config = b'{"a": 1}'
    status, _, body = commit(hub, "tester/demo", {"config.json": config, "sub/w.txt": b"hi"})
    assert status == 200 and body["commitOid"] == hub.head("tester/demo")
    status, headers, content = call(hub, "HEAD", "/tester/demo/resolve/main/config.json", raw=True)
    assert headers["X-Repo-Commit"] == body["commitOid"]
    assert headers["ETag"] == f'"{git_blob_oid(config)}"' and headers["Content-Length"] == str(len(config))
    assert call(hub, "GET", "/tester/demo/resolve/main/sub/w.txt", raw=True)[2] == b"hi"
    assert call(hub, "GET", f"/tester/demo/resolve/{body['commitOid']}/config.json", raw=True)[2] == config
    tree = call(hub, "GET", "/api/models/tester/demo/tree/main")[2]
    assert {(e["type"], e["path"]) for e in tree} == {("file", ".gitattributes"), ("file", "config.json"), ("directory", "sub")}
    recursive = call(hub, "GET", "/api/models/tester/demo/tree/main?recursive=true")[2]
    assert ("file", "sub/w.txt") in {(e["type"], e["path"]) for e in recursive}
    commits = call(hub, "GET", "/api/models/tester/demo/commits/main")[2]
    assert [c["title"] for c in commits] == ["add files", "initial commit"]
    info = call(hub, "GET", "/api/models/tester/demo")[2]
    assert info["sha"] == body["commitOid"] and {s["rfilename"] for s in info["siblings"]} == {".gitattributes", "config.json", "sub/w.txt"}


def test_error_codes_for_missing_repo_file_and_revision(hub):
    call(hub, "POST", "/api/repos/create", body={"name": "demo"})
    status, headers, _ = call(hub, "HEAD", "/tester/nothing/resolve/main/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
    status, headers, _ = call(hub, "GET", "/tester/demo/resolve/main/missing.json")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound") and headers["X-Repo-Commit"] == hub.head("tester/demo")
    status, headers, _ = call(hub, "GET", "/tester/demo/resolve/" + "0" * 40 + "/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    assert call(hub, "GET", "/api/models/tester/nothing")[1]["X-Error-Code"] == "RepoNotFound"


def test_failed_commit_changes_nothing_and_stale_parents_are_refused(hub):
    call(hub, "POST", "/api/repos/create", body={"name": "demo"})
    first = commit(hub, "tester/demo", {"a.txt": b"1"})[2]["commitOid"]
    hub.fail_next("commit", status=500, repo="tester/demo")
    status, _, body = commit(hub, "tester/demo", {"a.txt": b"2", "b.txt": b"new"})
    assert status == 500 and body == {"error": "Internal Error"}
    assert hub.head("tester/demo") == first
    assert {path: content for path, content in hub.files("tester/demo").items() if path != ".gitattributes"} == {"a.txt": b"1"}
    status, _, body = commit(hub, "tester/demo", {"a.txt": b"3"}, parent="f" * 40)
    assert status == 412 and hub.head("tester/demo") == first
    second = commit(hub, "tester/demo", {"a.txt": b"3"}, parent=first)[2]["commitOid"]
    assert hub.repos["tester/demo"].commits[second].parent == first
    preupload = call(hub, "POST", "/api/models/tester/demo/preupload/main", body={"files": [{"path": "a.txt", "sample": "", "size": 1}]})[2]
    assert preupload["files"] == [{"path": "a.txt", "uploadMode": "regular", "shouldIgnore": False, "oid": git_blob_oid(b"3")}]


def test_private_repos_and_write_permissions(hub):
    hub.create("tester/secret", {"a.txt": b"x"}, private=True)
    assert call(hub, "GET", "/tester/secret/resolve/main/a.txt", raw=True)[2] == b"x"
    assert call(hub, "GET", "/tester/secret/resolve/main/a.txt", token=OTHER)[1]["X-Error-Code"] == "RepoNotFound"
    assert call(hub, "GET", "/tester/secret/resolve/main/a.txt", token=None)[0] == 404
    assert commit(hub, "tester/secret", {"b.txt": b"y"}, token=OTHER)[0] == 404
    hub.create("tester/public", {"a.txt": b"x"})
    assert commit(hub, "tester/public", {"b.txt": b"y"}, token=OTHER)[0] == 403
    assert commit(hub, "tester/public", {"b.txt": b"y"}, token=READ)[0] == 403
    assert commit(hub, "tester/public", {"b.txt": b"y"}, token=None)[0] == 401


def test_validate_yaml_and_card_data(hub):
    assert call(hub, "POST", "/api/validate-yaml", body={"content": "---\nlicense: mit\n---\n# x"})[0] == 200
    status, _, body = call(hub, "POST", "/api/validate-yaml", body={"content": "---\n- a list\n---\n"})
    assert status == 400 and "mapping" in body["errors"][0]["message"]
    hub.create("tester/carded", {"README.md": b"---\nlibrary_name: modalzoo\npipeline_tag: audio-to-audio\ntags: [x]\n---\n# hi\n"})
    info = call(hub, "GET", "/api/models/tester/carded")[2]
    assert (info["library_name"], info["pipeline_tag"], info["tags"]) == ("modalzoo", "audio-to-audio", ["x", "modalzoo"])
