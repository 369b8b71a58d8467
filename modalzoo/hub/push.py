"""Publishing to the Hub: weights, processor, model card (and optionally code) in ONE commit.

`push_model` stages everything in a temporary folder, then makes a single `create_commit` whose
last file is README.md, so transformers' generic card never replaces the family's card and a
failed push changes nothing: the Hub applies a commit entirely or not at all, and the source
folder is only read. Every failure is raised as `HubError` naming the repo and the step.
`ModalTokenizer.push_to_hub` and the processors' `push_to_hub` call into this module.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi

from .cards import render_model_card
from .errors import HubError, hub_step

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def load_folder(folder: str | Path):
    """(model, processor) of a saved modalzoo folder; the processor is built from the config
    when the folder has none (converted folders always do)."""
    from transformers import AutoConfig, AutoModel

    from .. import models  # noqa: F401  (registers the families)
    from ..registry import family_of

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no config.json)")
    config = AutoConfig.from_pretrained(folder)
    family = family_of(config)
    model = AutoModel.from_pretrained(folder).eval()
    processor = None
    if family.processor_class is not None:
        if (folder / "preprocessor_config.json").is_file():
            processor = family.processor_class.from_pretrained(folder)
        else:
            processor = family.processor_class.from_model_config(model.config)
    return model, processor


def default_processor(model):
    from ..registry import family_of

    processor_class = family_of(model.config).processor_class
    return None if processor_class is None else processor_class.from_model_config(model.config)


def save_for_hub(
    model,
    folder: str | Path,
    *,
    processor=None,
    repo_id: str | None = None,
    metrics=None,
    with_code: bool = False,
    card: bool = True,
    base_model: str | None = "auto",
    tags: list[str] | None = None,
    max_shard_size: int | str = "50GB",
) -> list[str]:
    """Writes a Hub-ready folder: config.json, *.safetensors, the processor's config, the
    family's code when `with_code`, and README.md rendered last. Returns the file names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    if processor is not None:
        processor.save_pretrained(folder)
    if with_code:
        from ..registry import family_of
        from .remote_code import export_remote_code

        export_remote_code(folder, family_of(model.config))
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"refusing to publish pickle files {pickles}: modalzoo publishes safetensors only")
    if card:
        rendered = render_model_card(model, repo_id, metrics=metrics, base_model=base_model, with_code=with_code, tags=tags)
        rendered.save(folder / "README.md")
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def _commit_operations(folder: Path) -> list[CommitOperationAdd]:
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.name == "README.md", str(p)))
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files]


def _remote_state(api: HfApi, repo_id: str, revision: str | None, before: str | None):
    """A callable that, after a failed commit, says where the remote branch is."""

    def describe() -> str | None:
        head = api.repo_info(repo_id, revision=revision).sha
        if before is None:
            return None
        if head == before:
            return f"the remote repository is unchanged (still at commit {before[:12]})"
        return f"the remote branch moved from {before[:12]} to {head[:12]}"

    return describe


def _create_repo(api: HfApi, action: str, repo_id: str, private: bool | None, revision: str | None) -> str:
    with hub_step(action, repo_id, "create repo"):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision not in (None, "main"):
        with hub_step(action, repo_id, "create branch"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    return repo_id


def _commit(api, action, repo_id, folder, *, commit_message, commit_description, revision, create_pr) -> CommitInfo:
    with hub_step(action, repo_id, "read remote state"):
        head = api.repo_info(repo_id, revision=revision).sha
    with hub_step(action, repo_id, "commit", after_failure=_remote_state(api, repo_id, revision, head)):
        return api.create_commit(
            repo_id,
            operations=_commit_operations(folder),
            commit_message=commit_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            parent_commit=None if create_pr else head,
        )


def push_model(
    model_or_folder,
    repo_id: str,
    *,
    processor=None,
    metrics=None,
    with_code: bool = False,
    card: bool = True,
    base_model: str | None = "auto",
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str = "50GB",
    tags: list[str] | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """Pushes a modalzoo model (or a saved folder of one) to `repo_id` in one commit: weights as
    safetensors, the processor (the folder's, `processor`, or the default one built from the
    config; `processor=False` for none), the family's code with `auto_map` when `with_code`, and
    the model card with `metrics` (see `modalzoo.hub.cards`). Creates the repo (and the branch
    `revision`) when missing. Raises `HubError` naming the step that failed."""
    action = "pushing to"
    api = HfApi(endpoint=endpoint, token=token)
    if isinstance(model_or_folder, (str, Path)):
        with hub_step(action, repo_id, "load folder"):
            model, folder_processor = load_folder(model_or_folder)
        if processor is None:
            processor = folder_processor
    else:
        model = model_or_folder
    if processor is None:
        processor = default_processor(model)
    elif processor is False:
        processor = None
    repo_id = _create_repo(api, action, repo_id, private, revision)
    with tempfile.TemporaryDirectory(prefix="modalzoo-push-") as staging:
        with hub_step(action, repo_id, "save"):
            save_for_hub(
                model, staging, processor=processor, repo_id=repo_id, metrics=metrics, with_code=with_code,
                card=card, base_model=base_model, tags=tags, max_shard_size=max_shard_size,
            )
        message = commit_message or f"Upload {model.config.variant or model.config.model_type} with modalzoo"
        return _commit(
            api, action, repo_id, Path(staging), commit_message=message, commit_description=commit_description,
            revision=revision, create_pr=create_pr,
        )


def push_processor(
    processor,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    **unused,
) -> CommitInfo:
    """Pushes only the processor's config (no generic model card: the model push writes the
    card). An `auto_map` already in the remote processor config (a `with_code` push) is kept."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    action = "pushing the processor to"
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = _create_repo(api, action, repo_id, private, revision)
    with tempfile.TemporaryDirectory(prefix="modalzoo-push-") as staging:
        with hub_step(action, repo_id, "save"):
            processor.save_pretrained(staging)
        with hub_step(action, repo_id, "read remote processor config"):
            try:
                remote = hf_hub_download(repo_id, "preprocessor_config.json", revision=revision, token=token,
                                         endpoint=endpoint)
                remote_auto_map = json.loads(Path(remote).read_text()).get("auto_map")
            except EntryNotFoundError:
                remote_auto_map = None
        local = Path(staging) / "preprocessor_config.json"
        if remote_auto_map and local.is_file():
            content = json.loads(local.read_text())
            content["auto_map"] = remote_auto_map
            local.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        return _commit(
            api, action, repo_id, Path(staging), commit_message=commit_message or "Upload processor",
            commit_description=commit_description, revision=revision, create_pr=create_pr,
        )


__all__ = ["HubError", "load_folder", "push_model", "push_processor", "save_for_hub"]
