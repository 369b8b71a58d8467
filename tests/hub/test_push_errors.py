"""Push failures that need no server, in the test process itself (HF_HUB_OFFLINE=1 here)."""

from __future__ import annotations

import pytest

import modalzoo
from modalzoo.cli import build_parser, main
from modalzoo.hub import HubError, push_model


def test_push_while_offline_fails_at_create_repo_naming_the_cause():
    with pytest.raises(HubError) as caught:
        push_model(modalzoo.create_model("reference-audio-tiny"), "me/codec")
    error = caught.value
    assert (error.repo_id, error.step) == ("me/codec", "create repo")
    assert str(error) == (
        "pushing to 'me/codec' failed at step 'create repo': HF_HUB_OFFLINE=1 is set, so the Hub cannot be "
        "reached; unset it to push or to download new files"
    )


def test_push_of_a_folder_without_a_model_fails_before_touching_the_hub(tmp_path, capsys):
    assert main(["push", str(tmp_path), "me/x"]) == 2
    assert capsys.readouterr().err == (
        f"modalzoo push: error: pushing to 'me/x' failed at step 'load folder': {tmp_path} is not a saved model "
        "folder (no config.json)\n"
    )


def test_command_line_options():
    args = build_parser().parse_args(["push", "out", "me/x", "--with-code", "--metrics", "eval.json", "--revision", "v2"])
    assert (args.folder, args.repo, args.with_code, args.metrics, args.revision, args.no_card) == (
        "out", "me/x", True, "eval.json", "v2", False
    )
    args = build_parser().parse_args(["convert", "titok", "--checkpoint", "c", "--output", "o", "--push-to-hub", "me/t"])
    assert args.push_to_hub == "me/t"
