"""Puller: a fresh process (own HF_HOME) loads what the publisher pushed, as two users would.

Usage: pull.py REPORT PUBLISH_REPORT.

1. A user WITHOUT modalzoo: modalzoo is an editable install here, so its import hook is removed
   and the name blocked before anything is imported; the report records that `import modalzoo`
   fails, then every `--with-code` repo is loaded with trust_remote_code=True and encodes.
2. A modalzoo user (the block lifted): every family's repo through the Auto classes, the pinned
   repo at both commits, the cards read back, and each card's quick-start snippet executed.
"""

from __future__ import annotations

import sys


class _BlockModalzoo:
    def find_spec(self, name, path=None, target=None):
        if name == "modalzoo" or name.startswith("modalzoo."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a user without modalzoo)", name=name)
        return None


def _is_modalzoo_hook(finder) -> bool:
    return "modalzoo" in getattr(finder, "__module__", "") or "modalzoo" in type(finder).__module__


hidden_finders = [finder for finder in sys.meta_path if _is_modalzoo_hook(finder)]
sys.meta_path[:] = [_BlockModalzoo()] + [finder for finder in sys.meta_path if not _is_modalzoo_hook(finder)]

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import torchaudio  # noqa: E402,F401  (what modalzoo will need later: imported while waiting)
import transformers.image_processing_utils  # noqa: E402,F401
from huggingface_hub import HfApi, ModelCard  # noqa: E402
from samples import encode, wait_for_go, write_report  # noqa: E402
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel  # noqa: E402

wait_for_go()

published = json.loads(Path(sys.argv[2]).read_text())
AUTO = {"AutoImageProcessor": AutoImageProcessor, "AutoFeatureExtractor": AutoFeatureExtractor}
report: dict = {"remote": {}, "families": {}, "pinned": {}}

# ----- 1. without modalzoo: trust_remote_code ---------------------------------------------------
try:
    import modalzoo  # noqa: F401

    report["modalzoo_import_without_package"] = "imported"
except ModuleNotFoundError as error:
    report["modalzoo_import_without_package"] = str(error)
for family, entry in published["families"].items():
    model = AutoModel.from_pretrained(entry["remote_repo"], trust_remote_code=True)
    processor = AUTO[entry["processor_auto"]].from_pretrained(entry["remote_repo"], trust_remote_code=True)
    report["remote"][family] = {
        "got": encode(model, processor),
        "model_module": type(model).__module__,
        "processor_module": type(processor).__module__,
    }
report["modalzoo_modules_while_blocked"] = sorted(n for n in sys.modules if n == "modalzoo" or n.startswith("modalzoo."))

# ----- 2. a modalzoo user ------------------------------------------------------------------------
sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _BlockModalzoo)] + hidden_finders
import modalzoo  # noqa: E402,F401,F811  (registers the families)

api = HfApi()


def card_of(repo_id: str) -> dict:
    card = ModelCard.load(repo_id)
    info = api.model_info(repo_id)
    return {
        "data": card.data.to_dict(),
        "text": card.text,
        "eval_results": [
            {"metric_type": r.metric_type, "metric_value": r.metric_value, "dataset_type": r.dataset_type,
             "dataset_split": r.dataset_split, "task_type": r.task_type}
            for r in (card.data.eval_results or [])
        ],
        "info": {"library_name": info.library_name, "pipeline_tag": info.pipeline_tag, "tags": info.tags, "sha": info.sha},
    }


for family, entry in published["families"].items():
    model = AutoModel.from_pretrained(entry["repo"])
    processor = AUTO[entry["processor_auto"]].from_pretrained(entry["repo"])
    card = card_of(entry["repo"])
    snippet = re.search(r"```python\n(.*?)```", card["text"], flags=re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(snippet, f"<quick start of {entry['repo']}>", "exec"), namespace)
    report["families"][family] = {
        "model_class": type(model).__name__,
        "processor_class": type(processor).__name__,
        "got": encode(model, processor),
        "card": card,
        "quick_start": {
            "codes": list(namespace["codes"].shape),
            "llm_ids": list(namespace["llm_ids"].shape),
            "llm_ids_min": int(namespace["llm_ids"].min()),
        },
    }

processor = AutoImageProcessor.from_pretrained("tester/pinned")
for name, entry in published["pinned"].items():
    report["pinned"][name] = encode(AutoModel.from_pretrained("tester/pinned", revision=entry["commit"]), processor)
report["pinned"]["main"] = encode(AutoModel.from_pretrained("tester/pinned"), processor)
report["pinned"]["branch"] = encode(AutoModel.from_pretrained("tester/pinned", revision="experimental"), processor)
report["with_metrics"] = card_of("tester/with-metrics")
report["cli_push"] = {
    "got": encode(AutoModel.from_pretrained("tester/cli-push"), AutoFeatureExtractor.from_pretrained("tester/cli-push")),
    "card": card_of("tester/cli-push"),
}
report["cli_convert"] = {
    "got": encode(AutoModel.from_pretrained("tester/converted"), AutoImageProcessor.from_pretrained("tester/converted")),
    "card": card_of("tester/converted"),
}
write_report(report)
