"""Push -> pull through the real huggingface_hub / transformers clients and the fake Hub.

Three fresh processes share the work (importing torch + transformers + modalzoo dominates a
client's cost): the publisher pushes every family and provokes the failures, the puller loads
everything back (first as a user without modalzoo, through trust_remote_code, then as a modalzoo
user), and an offline process reloads from the puller's cache. The tests assert on their reports.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from conftest import client_env, finish_client, start_client

from modalzoo.registry import FAMILIES, tiny_variant

LICENCES = {"reference_image": "apache-2.0", "reference_audio": "apache-2.0", "titok": "apache-2.0",
            "one_d_piece": "apache-2.0", "wavtokenizer": "mit"}
PIPELINE_TAGS = {"image": "image-feature-extraction", "audio": "audio-to-audio", "speech": "audio-to-audio"}
REPO_FILES = {".gitattributes", "README.md", "config.json", "model.safetensors", "preprocessor_config.json"}


@pytest.fixture(scope="session")
def hub_run(fake_hub, tmp_path_factory):
    """Runs the three clients; each starts at once (imports overlap) and works when its input exists."""
    work = tmp_path_factory.mktemp("hub_run")
    fake_hub.create("tester/interrupted", {"README.md": b"---\nlicense: mit\n---\n# an earlier version\n"})
    fake_hub.create("tester/no-config", {"README.md": b"# no weights here\n"})
    seeded_head = fake_hub.head("tester/interrupted")
    fake_hub.fail_next("commit", status=500, message="Internal Error", repo="tester/interrupted")
    publish_report, pull_report = work / "publish.json", work / "pull.json"
    clients = [
        start_client("publish.py", publish_report, client_env(fake_hub, work / "publisher"), work),
        start_client("pull.py", pull_report, client_env(fake_hub, work / "user"), publish_report, wait_for=publish_report),
        start_client("offline.py", work / "offline.json", client_env(fake_hub, work / "user", offline=True),
                     publish_report, wait_for=pull_report),
    ]
    try:
        published, pulled, offline = (finish_client(client) for client in clients)
    finally:
        for _, process, _, _ in clients:
            if process.poll() is None:
                process.kill()
    return SimpleNamespace(work=work, published=published, pulled=pulled, offline=offline, seeded_head=seeded_head)


@pytest.fixture(scope="session")
def pulled(hub_run):
    return hub_run.pulled


@pytest.fixture(scope="session")
def offline(hub_run):
    return hub_run.offline


def families_to_publish() -> set[str]:
    return {
        name for name, family in FAMILIES.items()
        if tiny_variant(name) and family.modality in PIPELINE_TAGS
    }


# ----- push / pull -------------------------------------------------------------------------------
def test_every_family_with_a_tiny_variant_is_published(hub_run):
    published = hub_run.published["families"]
    assert set(published) == families_to_publish()
    assert {"reference_image", "reference_audio"} <= set(published)


def test_pull_in_a_fresh_process_gives_identical_codes(hub_run, pulled):
    for family, entry in hub_run.published["families"].items():
        got = pulled["families"][family]
        assert got["model_class"] == FAMILIES[family].model_class.__name__
        assert got["processor_class"] == FAMILIES[family].processor_class.__name__
        assert got["got"]["codes"] is not None, family
        assert got["got"] == entry["expected"], f"{family}: codes changed through the Hub"


def test_model_push_carries_processor_and_card_in_one_commit(hub_run, fake_hub):
    for family, entry in hub_run.published["families"].items():
        # create_repo's initial commit + the model push; the processor push then changes nothing
        assert len(entry["commits"]) == 2, family
        assert entry["commits"][0] == entry["model_commit"] == entry["processor_commit"]
        assert set(entry["files"]) == REPO_FILES, family
        assert fake_hub.head(entry["repo"]) == entry["model_commit"]


def test_only_safetensors_are_written(hub_run, fake_hub):
    for entry in hub_run.published["families"].values():
        for repo in (entry["repo"], entry["remote_repo"]):
            files = fake_hub.files(repo)
            assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
            assert files["model.safetensors"][8:9] == b"{"  # safetensors: 8-byte header size, then JSON


def test_revision_pins_a_commit_and_branches_push_aside(hub_run, pulled):
    pinned, got = hub_run.published["pinned"], pulled["pinned"]
    assert pinned["seed1"]["commit"] != pinned["seed2"]["commit"]
    assert pinned["seed1"]["expected"] != pinned["seed2"]["expected"]
    assert got["seed1"] == pinned["seed1"]["expected"]
    assert got["seed2"] == got["main"] == pinned["seed2"]["expected"]
    assert hub_run.published["pinned_main"] == pinned["seed2"]["commit"]  # the branch push left main alone
    assert got["branch"] == got["experimental"] == pinned["experimental"]["expected"]


def test_offline_mode_reloads_from_the_cache(hub_run, offline):
    for family, entry in hub_run.published["families"].items():
        assert offline["families"][family] == entry["expected"], family
    assert offline["pinned_seed1"] == hub_run.published["pinned"]["seed1"]["expected"]
    assert offline["never_downloaded"] == (
        "loading 'tester/never-downloaded' failed: HF_HUB_OFFLINE=1 is set and the files of "
        "'tester/never-downloaded' are not in the local cache; download them once online"
    )


def test_remote_code_loads_where_modalzoo_is_not_installed(hub_run, pulled):
    assert "No module named 'modalzoo'" in pulled["modalzoo_import_without_package"]
    assert pulled["modalzoo_modules_while_blocked"] == []
    for family, entry in hub_run.published["families"].items():
        remote = pulled["remote"][family]
        assert remote["model_module"].startswith("transformers_modules.tester."), remote["model_module"]
        assert remote["processor_module"].startswith("transformers_modules.tester.")
        assert remote["got"] == entry["expected"], f"{family}: remote code encodes differently"
        exported = {f for f in entry["remote_files"] if f.endswith(".py")}
        assert {"modalzoo_modeling_utils.py", "modalzoo_processing_utils.py"} <= exported


# ----- cards -------------------------------------------------------------------------------------
def test_cards_have_modalzoo_metadata(hub_run, pulled):
    for family, entry in hub_run.published["families"].items():
        card = pulled["families"][family]["card"]
        modality = FAMILIES[family].modality
        assert card["data"]["library_name"] == "modalzoo"
        assert card["data"]["pipeline_tag"] == PIPELINE_TAGS[modality]
        assert {"modalzoo", "tokenizer", f"{modality}-tokenizer"} <= set(card["data"]["tags"])
        if family in LICENCES:
            assert card["data"]["license"] == LICENCES[family]
        assert card["info"]["library_name"] == "modalzoo" and card["info"]["sha"] == entry["model_commit"]
        assert "base_model" not in card["data"]  # random init: derived from no release
        text = card["text"]
        assert f'AutoModel.from_pretrained("{entry["repo"]}")' in text
        assert "## Quick start" in text and "## Metrics" in text and "## Licence" in text and "## Citation" in text


def test_card_quick_start_runs_and_maps_codes_to_llm_ids(pulled):
    for family, result in pulled["families"].items():
        quick = result["quick_start"]
        batch, codebooks, positions = quick["codes"]
        assert quick["llm_ids"] == [batch, codebooks * positions], family
        assert quick["llm_ids_min"] >= 32000


def test_card_model_index_holds_the_measured_metrics(hub_run, pulled):
    card = pulled["with_metrics"]
    metrics = hub_run.published["metrics"]
    assert {(r["metric_type"], r["metric_value"]) for r in card["eval_results"]} == set(metrics["metrics"].items())
    assert {r["dataset_type"] for r in card["eval_results"]} == {"modalzoo/shapes"}
    assert {r["dataset_split"] for r in card["eval_results"]} == {"test"}
    assert {r["task_type"] for r in card["eval_results"]} == {"image-to-image"}
    model_index = card["data"]["model-index"][0]
    assert model_index["name"] == "with-metrics"
    assert "| PSNR | 23.25 | Procedural shapes | test |" in card["text"]


# ----- command line ------------------------------------------------------------------------------
def test_cli_push_sends_weights_processor_and_card_in_one_commit(hub_run, pulled):
    push = hub_run.published["cli_push"]
    assert push["returncode"] == 0, push["stderr"]
    assert push["stdout"].startswith(f"pushed {hub_run.work / 'audio-folder'} to tester/cli-push at commit {push['commits'][0][:12]}")
    assert len(push["commits"]) == 2 and set(push["files"]) == REPO_FILES
    assert push["folder_unchanged"]
    assert pulled["cli_push"]["got"] == push["expected"]
    results = {r["metric_type"]: r for r in pulled["cli_push"]["card"]["eval_results"]}
    assert set(results) == {"si_sdr", "stoi"}  # pesq_wb was NaN in the evaluation JSON: left out
    assert math.isclose(results["si_sdr"]["metric_value"], 4.5)
    assert results["stoi"]["dataset_type"] == "modalzoo/speech-samples"


def test_cli_convert_push_to_hub_publishes_the_converted_original(hub_run, pulled):
    convert = hub_run.published["cli_convert"]
    assert convert["returncode"] == 0, convert["stderr"]
    assert "keys mapped: 12" in convert["stdout"] and "pushed " in convert["stdout"]
    assert set(convert["files"]) == REPO_FILES
    assert set(convert["local_files"]) == REPO_FILES - {".gitattributes"}  # the card is written locally too
    assert pulled["cli_convert"]["got"] == convert["expected"]
    assert pulled["cli_convert"]["card"]["data"]["library_name"] == "modalzoo"


# ----- failures ----------------------------------------------------------------------------------
def test_interrupted_push_leaves_remote_and_folder_unchanged(hub_run, fake_hub):
    failed = hub_run.published["interrupted"]
    assert failed["returncode"] == 2
    assert failed["stderr"] == (
        "modalzoo push: error: pushing to 'tester/interrupted' failed at step 'commit': the Hub answered 500 "
        f"(Internal Error); the remote repository is unchanged (still at commit {hub_run.seeded_head[:12]})\n"
    )
    assert failed["head_after_failure"] == hub_run.seeded_head
    assert failed["folder_unchanged"] and hub_run.published["folder_unchanged_at_end"]
    retry = hub_run.published["retry"]
    assert retry["returncode"] == 0 and retry["head"] == fake_hub.head("tester/interrupted") != hub_run.seeded_head
    history = fake_hub.repos["tester/interrupted"].history(retry["head"])
    assert history[1].oid == hub_run.seeded_head  # the retry sits right on the seeded commit


def test_missing_repo_file_and_revision_have_clear_messages(hub_run, fake_hub):
    published = hub_run.published
    assert published["missing_repo"]["returncode"] == 2
    assert published["missing_repo"]["stderr"] == (
        "modalzoo info: error: loading 'tester/does-not-exist' failed: repository 'tester/does-not-exist' does not "
        f"exist on {fake_hub.url}, or it is private and the token in use cannot read it\n"
    )
    assert published["missing_file"]["stderr"] == (
        "modalzoo info: error: loading 'tester/no-config' failed: 'tester/no-config' has no file 'config.json' at "
        "revision 'main'\n"
    )
    assert published["missing_revision"] == (
        f"loading 'tester/interrupted' failed: revision '{'f' * 40}' does not exist in 'tester/interrupted' "
        "(not a branch, tag or commit id)"
    )


def test_bad_and_read_only_tokens_have_clear_messages(hub_run, fake_hub):
    published = hub_run.published
    rejected = (
        f"the Hub ({fake_hub.url}) rejected the access token (401 invalid credentials): set a valid token with "
        "`hf auth login` or the HF_TOKEN environment variable"
    )
    assert published["bad_token_push"]["stderr"] == (
        f"modalzoo push: error: pushing to 'tester/bad-token' failed at step 'create repo': {rejected}\n"
    )
    assert published["bad_token_pull"]["stderr"] == f"modalzoo info: error: loading 'tester/interrupted' failed: {rejected}\n"
    assert published["read_only_push"]["stderr"].startswith(
        "modalzoo push: error: pushing to 'tester/read-only' failed at step 'create repo': the token in use may not "
        "write to 'tester/read-only' (403 forbidden"
    )
    assert "tester/bad-token" not in fake_hub.repos and "tester/read-only" not in fake_hub.repos
