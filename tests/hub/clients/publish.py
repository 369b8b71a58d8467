"""Publisher: pushes every registered family's tiny model to the fake Hub, the way a user would,
then provokes the failures a user can meet.

Usage: publish.py REPORT WORKDIR. Writes REPORT (JSON) with, per family, the codes its model
gives the sample inputs before the push and the commit ids of each push; plus a repo pushed
twice (for revision pinning), a card with metrics, a `modalzoo push` of a folder, a
`modalzoo convert --push-to-hub` of an original checkpoint, and the errors: the test has seeded
`tester/interrupted` and `tester/no-config` and queued a server error for the next commit to
`tester/interrupted`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import types
from pathlib import Path

import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from samples import encode, write_report

import modalzoo
from modalzoo.cli import main as cli
from modalzoo.hub import HubError, from_pretrained, push_model
from modalzoo.registry import FAMILIES, tiny_variant

workdir = Path(sys.argv[2])
api = HfApi()
report: dict = {"families": {}, "skipped": {}}


def commit_files(repo_id: str, revision: str) -> list[str]:
    return sorted(api.list_repo_files(repo_id, revision=revision))


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_cli(*argv: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(argv))
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


# ----- every family: model.push_to_hub + processor.push_to_hub, and a --with-code repo -------------
for family in sorted(FAMILIES):
    tiny = tiny_variant(family)
    if tiny is None:
        report["skipped"][family] = "no -tiny variant"
        continue
    torch.manual_seed(0)
    model, processor = modalzoo.create_model(tiny), modalzoo.create_processor(tiny)
    try:
        expected = encode(model, processor)
    except NotImplementedError as error:
        report["skipped"][family] = str(error)
        continue
    repo = f"tester/{tiny}"
    model_commit = model.push_to_hub(repo)
    processor_commit = processor.push_to_hub(repo)
    remote_repo = f"tester/{tiny}-remote-code"
    remote_commit = push_model(model, remote_repo, processor=processor, with_code=True)
    auto = "AutoImageProcessor" if model.modality == "image" else "AutoFeatureExtractor"
    report["families"][family] = {
        "repo": repo,
        "remote_repo": remote_repo,
        "processor_auto": auto,
        "expected": expected,
        "model_commit": model_commit.oid,
        "processor_commit": processor_commit.oid,
        "remote_commit": remote_commit.oid,
        "files": commit_files(repo, model_commit.oid),
        "remote_files": commit_files(remote_repo, remote_commit.oid),
        "commits": [c.commit_id for c in api.list_repo_commits(repo)],
    }

# ----- the same repo pushed twice: revision= pins the first ------------------------------------------
reference = "reference-image-tiny"
processor = modalzoo.create_processor(reference)
pinned = {}
for seed in (1, 2):
    torch.manual_seed(seed)
    model = modalzoo.create_model(reference)
    commit = model.push_to_hub("tester/pinned", commit_message=f"weights of seed {seed}")
    pinned[f"seed{seed}"] = {"commit": commit.oid, "expected": encode(model, processor)}
torch.manual_seed(3)
model = modalzoo.create_model(reference)
commit = push_model(model, "tester/pinned", revision="experimental")  # a new branch; main stays
pinned["experimental"] = {"commit": commit.oid, "expected": encode(model, processor)}
report["pinned"] = pinned
report["pinned_main"] = api.repo_info("tester/pinned").sha

# ----- a card with measured metrics -------------------------------------------------------------------
metrics = {
    "dataset": {"name": "Procedural shapes", "type": "modalzoo/shapes", "split": "test"},
    "metrics": {"psnr": 23.25, "ssim": 0.8125, "codebook_usage": 0.75},
}
torch.manual_seed(6)
push_model(modalzoo.create_model(reference), "tester/with-metrics", metrics=metrics)
report["metrics"] = metrics

# ----- `modalzoo push DIR REPO`: weights + processor + card in one commit, folder untouched -----------
folder = workdir / "audio-folder"
torch.manual_seed(4)
audio_model = modalzoo.create_model("reference-audio-tiny")
audio_model.save_pretrained(folder)
modalzoo.create_processor("reference-audio-tiny").save_pretrained(folder)
eval_json = workdir / "eval.json"
eval_json.write_text(json.dumps({"format_version": 1, "dataset": "modalzoo/speech-samples", "split": "test",
                                 "metrics": {"si_sdr": 4.5, "stoi": 0.61, "pesq_wb": float("nan")}}))
before = folder_digest(folder)
report["cli_push"] = {
    **run_cli("push", str(folder), "tester/cli-push", "--metrics", str(eval_json)),
    "commits": [c.commit_id for c in api.list_repo_commits("tester/cli-push")],
    "files": commit_files("tester/cli-push", "main"),
    "folder_unchanged": before == folder_digest(folder),
    "expected": encode(audio_model, modalzoo.create_processor("reference-audio-tiny")),
}

# ----- `modalzoo convert ... --push-to-hub REPO` ----------------------------------------------------
# A stand-in converter for an "original" release whose keys carry a `net.` prefix: it exercises the
# command line (convert -> card -> push) independently of any real family's converter.
torch.manual_seed(5)
original_model = modalzoo.create_model(reference)
original = workdir / "original.safetensors"
save_file({f"net.{k}": v.contiguous() for k, v in original_model.state_dict().items()}, str(original))


def convert_checkpoint(checkpoint, output, variant=None, config=None):
    state = {k.removeprefix("net."): v for k, v in load_file(checkpoint).items()}
    model = modalzoo.create_model(variant or reference)
    model.load_state_dict(state, strict=True)
    model.save_pretrained(output)
    modalzoo.create_processor(model.config).save_pretrained(output)
    return {"mapped": len(state), "dropped": {}, "missing": []}


converter = types.ModuleType("modalzoo.conversion.hubtest_original")
converter.convert_checkpoint = convert_checkpoint
sys.modules[converter.__name__] = converter
converted = workdir / "converted"
report["cli_convert"] = {
    **run_cli("convert", "hubtest_original", "--checkpoint", str(original), "--output", str(converted),
              "--push-to-hub", "tester/converted"),
    "files": commit_files("tester/converted", "main"),
    "local_files": sorted(p.name for p in converted.iterdir()),
    "expected": encode(original_model, processor),
}

# ----- failures -------------------------------------------------------------------------------------
folder = workdir / "image-folder"
modalzoo.create_model("reference-image-tiny").save_pretrained(folder)
modalzoo.create_processor("reference-image-tiny").save_pretrained(folder)
before = folder_digest(folder)

# 1. a server error mid-commit, then the same push again
report["interrupted"] = run_cli("push", str(folder), "tester/interrupted")
report["interrupted"]["folder_unchanged"] = folder_digest(folder) == before
report["interrupted"]["head_after_failure"] = api.repo_info("tester/interrupted").sha
report["retry"] = run_cli("push", str(folder), "tester/interrupted")
report["retry"]["head"] = api.repo_info("tester/interrupted").sha

# 2. pulling what is not there
report["missing_repo"] = run_cli("info", "tester/does-not-exist")
report["missing_file"] = run_cli("info", "tester/no-config")
try:
    from_pretrained("tester/interrupted", revision="f" * 40)
except HubError as error:
    report["missing_revision"] = str(error)

# 3. tokens: invalid, and read-only for a push
os.environ["HF_TOKEN"] = "hf_not_a_valid_token"
report["bad_token_push"] = run_cli("push", str(folder), "tester/bad-token")
report["bad_token_pull"] = run_cli("info", "tester/interrupted")
os.environ["HF_TOKEN"] = "hf_fake_read_token"
report["read_only_push"] = run_cli("push", str(folder), "tester/read-only")
report["folder_unchanged_at_end"] = folder_digest(folder) == before
write_report(report)
