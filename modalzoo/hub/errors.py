"""Hub failures turned into one error type whose message names the repo, the step and the cause.

`huggingface_hub` raises a dozen exception types (and transformers wraps them in `OSError`s with
generic advice); `HubError` says what modalzoo was doing (`pushing to 'me/titok'`), at which step
(`create repo`, `save`, `commit`, ...) and why, in one line a user can act on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import httpx2
from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class HubError(OSError):
    """A push or pull that failed. `step` is where (e.g. "commit"), `reason` why."""

    def __init__(self, action: str, repo_id: str, step: str | None, reason: str):
        self.action, self.repo_id, self.step, self.reason = action, repo_id, step, reason
        where = f" at step {step!r}" if step else ""
        super().__init__(f"{action} {repo_id!r} failed{where}: {reason}")


def _hub_cause(error: BaseException) -> BaseException:
    """The huggingface_hub / httpx error behind `error` (transformers re-raises them as OSError)."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, HFValidationError, httpx2.TransportError)
        ):
            return current
        current = current.__cause__ or current.__context__
    return error


def _in_chain(error: BaseException, kind: type) -> bool:
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _resolve_parts(url: str) -> tuple[str | None, str | None]:
    """(revision, filename) of a `/{repo}/resolve/{revision}/{filename}` URL."""
    path = str(url).split("?")[0]
    if "/resolve/" not in path:
        return None, None
    revision, _, filename = path.split("/resolve/", 1)[1].partition("/")
    return unquote(revision), unquote(filename)


def describe_hub_error(error: BaseException, repo_id: str | None = None) -> str:
    """One sentence saying why a Hub call failed and what to do about it."""
    cause = _hub_cause(error)
    endpoint = constants.ENDPOINT
    repo = repo_id or getattr(cause, "repo_id", None) or "the repository"
    if isinstance(cause, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set, so the Hub cannot be reached; unset it to push or to download new files"
    if isinstance(cause, LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return f"HF_HUB_OFFLINE=1 is set and the files of {repo!r} are not in the local cache; download them once online"
        if _in_chain(cause, httpx2.TransportError):
            return f"could not connect to the Hub at {endpoint}, and the files of {repo!r} are not in the local cache"
        return f"the files of {repo!r} are not in the local cache (local_files_only=True)"
    if isinstance(cause, HFValidationError):
        return f"{repo!r} is neither a local folder nor a valid Hub repo id ({cause})"
    if isinstance(cause, httpx2.TransportError):
        return f"could not connect to the Hub at {endpoint}: {cause}"
    if not isinstance(cause, HfHubHTTPError):
        return str(error)
    response = cause.response
    status = response.status_code if response is not None else None
    server_message = cause.server_message or ""
    revision, filename = _resolve_parts(response.url) if response is not None else (None, None)
    if isinstance(cause, GatedRepoError):
        return f"{repo!r} is gated: request access on its Hub page, then use a token of the account that has it"
    if status == 401 and INVALID_CREDENTIALS in server_message:
        return (
            f"the Hub ({endpoint}) rejected the access token (401 invalid credentials): set a valid token with "
            "`hf auth login` or the HF_TOKEN environment variable"
        )
    if isinstance(cause, RepositoryNotFoundError):
        return (
            f"repository {repo!r} does not exist on {endpoint}, or it is private and the token in use "
            "cannot read it"
        )
    if isinstance(cause, RevisionNotFoundError):
        return f"revision {revision or '(requested)'!r} does not exist in {repo!r} (not a branch, tag or commit id)"
    if isinstance(cause, EntryNotFoundError):
        return f"{repo!r} has no file {filename!r} at revision {revision!r}" if filename else f"a file is missing in {repo!r}: {cause}"
    if status == 401:
        return f"the Hub ({endpoint}) needs a token for this: log in with `hf auth login` or set HF_TOKEN"
    if status == 403:
        return f"the token in use may not write to {repo!r} (403 forbidden: {server_message or 'no permission'})"
    if status == 412:
        return f"{repo!r} received another commit during this push (412 precondition failed); run it again"
    if status is not None and status >= 500:
        return f"the Hub answered {status} ({server_message or 'server error'})"
    return f"the Hub answered {status}: {server_message or cause}"


@contextlib.contextmanager
def hub_step(
    action: str, repo_id: str, step: str | None = None, *, after_failure: Callable[[], str | None] | None = None
) -> Iterator[None]:
    """Re-raises any failure inside the block as a `HubError` for (`action`, `repo_id`, `step`).
    `after_failure()` may return a sentence appended to the reason (e.g. the remote's state)."""
    try:
        yield
    except HubError:
        raise
    except Exception as error:
        reason = describe_hub_error(error, repo_id)
        if after_failure is not None:
            with contextlib.suppress(Exception):
                extra = after_failure()
                if extra:
                    reason = f"{reason}; {extra}"
        raise HubError(action, repo_id, step, reason) from error
