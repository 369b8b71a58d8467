"""Reconstruction metrics per modality and the speed / memory benchmark.

Metrics (`modalzoo eval`), each from a maintained library where one exists:

* image (`image_metrics`): PSNR, SSIM, LPIPS, rFID (torchmetrics; LPIPS and rFID download
  their pretrained weights on first use and are reported as unavailable, with the reason,
  when they cannot);
* audio and speech (`audio_metrics`): PESQ wb / nb (`pesq`), STOI (`pystoi`), SI-SDR
  (torchmetrics), DAC's mel distance and Parallel WaveGAN's multi-resolution STFT distance;
* every tokenizer with codes (`codebook_metrics`): codebook usage, perplexity, entropy.

The protocol (resize / crop, reference set, sampling rates, batch size) is pinned per family
in `protocols.FAMILY_PROTOCOLS` and written into each result.

Result JSON (`modalzoo eval ... --output result.json`, the input of the model-card renderer)::

    {
      "format_version": 1,
      "model": "titok-l32",              # what was evaluated: variant name, folder or Hub id
      "family": "titok",                 # config.model_type
      "variant": "titok-l32",            # config.variant (may be null for custom configs)
      "modality": "image",
      "dataset": "imagefolder:/data/val",  # the --data argument
      "split": "validation",             # or null
      "num_items": 50000,
      "protocol": {...},                 # see protocols.py; "overridden" lists departures
      "metrics": {"psnr": 21.3, "ssim": 0.61, "lpips": 0.12, "rfid": 2.1,
                  "codebook_usage": 0.98, "codebook_perplexity": 3800.0, ...},
      "unavailable": {"rfid": "pretrained weights could not be loaded (...)"},
      "notes": {"pesq_wb": "2 item(s) left out: ..."},
      "environment": {"modalzoo": "0.1.0", "torch": "2.9.1", "device": "cpu", "date": "..."}
    }

`metrics` holds plain floats keyed by the names in `METRIC_INFO`, which also gives each one's
display label, unit and direction (higher is better or not).

Benchmark (`modalzoo bench`, `benchmark.py`): writes `<tag>.json`, `<tag>.md` and `<tag>.png`
(throughput vs batch size) with `tag = <device>-<dtype>-<eager|compiled>[-smoke]`; the JSON is
`{"machine", "settings", "environment", "compare_original", "rows": [...]}` with one row per
model and batch size. `--compare-original` plugins are described in `originals/__init__.py`.
"""

from .audio_metrics import AUDIO_METRICS, AudioMetrics, mel_distance, pesq, si_sdr, stft_distance, stoi
from .benchmark import BenchSettings, default_models, render_markdown, run_benchmark, write_outputs
from .cad_metrics import CAD_METRICS, CADMetrics
from .codebook_metrics import CODEBOOK_METRICS, CodebookUsage
from .evaluate import METRIC_INFO, evaluate, format_table, iter_items, metrics_for
from .image_metrics import IMAGE_METRICS, ImageMetrics
from .protocols import FAMILY_PROTOCOLS, MODALITY_PROTOCOLS, protocol_for
from .shape_metrics import SHAPE_METRICS, chamfer_distance, cross_scale_iou, fscore, volumetric_iou

__all__ = [
    "AUDIO_METRICS",
    "AudioMetrics",
    "BenchSettings",
    "CAD_METRICS",
    "CADMetrics",
    "CODEBOOK_METRICS",
    "CodebookUsage",
    "FAMILY_PROTOCOLS",
    "IMAGE_METRICS",
    "ImageMetrics",
    "METRIC_INFO",
    "MODALITY_PROTOCOLS",
    "default_models",
    "evaluate",
    "format_table",
    "iter_items",
    "mel_distance",
    "metrics_for",
    "pesq",
    "protocol_for",
    "render_markdown",
    "run_benchmark",
    "si_sdr",
    "stft_distance",
    "stoi",
    "write_outputs",
    "SHAPE_METRICS",
    "chamfer_distance",
    "cross_scale_iou",
    "fscore",
    "volumetric_iou",
]
