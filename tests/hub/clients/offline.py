"""Offline reload: HF_HUB_OFFLINE=1 and the consumer's HF_HOME. Everything the consumer pulled
loads from the cache (also at a pinned commit); anything else fails with a clear message.

Usage: offline.py REPORT PUBLISH_REPORT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from huggingface_hub import constants
from samples import encode, wait_for_go, write_report
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel

import modalzoo  # noqa: F401
from modalzoo.cli import load_model_and_processor

assert constants.HF_HUB_OFFLINE, "this client must run with HF_HUB_OFFLINE=1"
wait_for_go()
published = json.loads(Path(sys.argv[2]).read_text())
AUTO = {"AutoImageProcessor": AutoImageProcessor, "AutoFeatureExtractor": AutoFeatureExtractor}
report: dict = {"families": {}}
for family, entry in published["families"].items():
    model = AutoModel.from_pretrained(entry["repo"])
    processor = AUTO[entry["processor_auto"]].from_pretrained(entry["repo"])
    report["families"][family] = encode(model, processor)
pinned = published["pinned"]["seed1"]["commit"]
report["pinned_seed1"] = encode(
    AutoModel.from_pretrained("tester/pinned", revision=pinned), AutoImageProcessor.from_pretrained("tester/pinned")
)
try:
    load_model_and_processor("tester/never-downloaded")
    report["never_downloaded"] = None
except OSError as error:
    report["never_downloaded"] = str(error)
write_report(report)
