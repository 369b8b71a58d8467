"""`modalzoo bench`: encode / decode speed and memory of every family on one machine.

For each model and batch size it runs `warmup` untimed calls, then `repeats` timed calls of
`encode` and of `decode` (on the codes that encode produced), and reports the median and the
spread (quartiles, min, max) of the latencies, items per second, the real-time factor for
audio (processing time / audio duration, below 1 is faster than real time), codes per item
and per second of audio, and peak memory.

Peak memory is measured on one extra call of each, apart from the timed ones:

* CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (tensors only; the
  caching allocator's reserve and the CUDA context are not counted);
* CPU: the process's resident set size. On Linux the kernel's own high-water mark is reset
  (`/proc/self/clear_refs` <- 5) before the call and read (`VmHWM`) after it: exact, and no
  cost while the call runs. Elsewhere a thread samples the RSS every millisecond (psutil),
  which can miss allocations that live for less than a sample. Python-level tracers such as
  tracemalloc do not see torch's allocator, so they are not used. Both the absolute peak and
  the increase over the RSS before the call are reported; freed heap memory is handed back
  to the OS first (glibc `malloc_trim`), else the call would reuse pages that earlier calls
  left in the allocator's cache and its increase would read as zero.

With `compare_original` a family plugin (`modalzoo.evaluation.originals`) builds the original
implementation from the user's checkout with the same weights; both are timed in the same run
on the same inputs and the table gains original / modalzoo latency ratios.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .evaluate import decode_arguments, environment

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchSettings:
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    batch_sizes: tuple[int, ...] = (1, 16)
    repeats: int = 10
    warmup: int = 2
    # Warm-up also lasts at least this long: the first calls at a new shape build oneDNN / cuDNN
    # plans and grow thread pools, and a fixed count is too few for small models.
    warmup_seconds: float = 1.0
    audio_seconds: float = 5.0
    smoke: bool = False
    encode_options: dict = field(default_factory=dict)
    decode_options: dict = field(default_factory=dict)  # ours only: the original's decode takes none
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (one per core)

    @classmethod
    def for_smoke(cls, **overrides) -> BenchSettings:
        """Tiny inputs and two repeats: a check that the whole path runs, not a measurement."""
        settings = {"repeats": 2, "warmup": 1, "warmup_seconds": 0.0, "audio_seconds": 0.25, "smoke": True}
        return cls(**{**settings, **overrides})

    @property
    def tag(self) -> str:
        return f"{self.device}-{self.dtype}-{'compiled' if self.compile else 'eager'}" + ("-smoke" if self.smoke else "")


# ----- which models ----------------------------------------------------------------------------
def default_models(families: Iterable[str] | None = None, *, tiny: bool = False) -> list[str]:
    """One variant per family: its `-tiny` variant when `tiny`, else the first released variant
    it registered (families without released variants fall back to their tiny one)."""
    from ..registry import FAMILIES, VARIANTS

    chosen = []
    names = list(families) if families else sorted(FAMILIES)
    for family in names:
        if family not in FAMILIES:
            raise KeyError(f"unknown family {family!r}; registered: {', '.join(sorted(FAMILIES))}")
        variants = [name for name, variant in VARIANTS.items() if variant.family == family]
        tiny_variants = [name for name in variants if name.endswith("-tiny")]
        released = [name for name in variants if not name.endswith("-tiny")]
        pick = (tiny_variants or released) if tiny else (released or tiny_variants)
        if not pick:
            raise KeyError(f"family {family!r} registers no variant")
        chosen.append(pick[0])
    return chosen


def load_variant(spec: str):
    from ..registry import create_model, create_processor

    model = create_model(spec)
    return model, create_processor(model.config)


def cast_model(model, dtype: torch.dtype):
    """Casts floating weights and buffers to `dtype` except the modules a load in that dtype
    keeps in fp32 (`_keep_in_fp32_modules[_strict]`, the codebooks): as `from_pretrained(dtype=)`."""
    if dtype == torch.float32:
        return model.float()
    keep = list(getattr(model, "_keep_in_fp32_modules_strict", None) or []) + list(
        getattr(model, "_keep_in_fp32_modules", None) or []
    )
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not any(fragment in name for fragment in keep):
            tensor.data = tensor.data.to(dtype)
    return model


# ----- inputs ------------------------------------------------------------------------------------
def example_inputs(model, processor, batch_size: int, audio_seconds: float) -> tuple[dict, float | None]:
    """A batch of deterministic inputs through the model's own processor, and the seconds of
    audio per item (None for other modalities)."""
    generator = np.random.default_rng(0)
    if model.modality == "image":
        size = int(model.config.image_size)
        image = generator.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        return dict(processor([image] * batch_size, return_tensors="pt")), None
    if model.modality in ("audio", "speech"):
        rate = int(model.config.sampling_rate)
        samples = max(int(round(audio_seconds * rate)), 1)
        time_axis = np.arange(samples) / rate
        clip = (0.3 * np.sin(2 * np.pi * 220.0 * time_axis) + 0.05 * generator.standard_normal(samples)).astype(np.float32)
        inputs = dict(processor([clip] * batch_size, sampling_rate=rate, return_tensors="pt"))
        return inputs, samples / rate
    if model.modality == "3d":  # points + normals on a unit sphere, at the model's point count
        directions = generator.standard_normal((int(model.config.num_points), 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        return dict(processor(points=[directions] * batch_size, normals=[directions] * batch_size, return_tensors="pt")), None
    raise ValueError(f"the benchmark has no example input for modality {model.modality!r} yet")


def _prepare_inputs(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    prepared = {}
    for key, value in inputs.items():
        if torch.is_tensor(value):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        prepared[key] = value
    return prepared


# ----- measuring -------------------------------------------------------------------------------
def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_calls(
    fn: Callable[[], Any], *, repeats: int, warmup: int, synchronize: Callable[[], None], warmup_seconds: float = 0.0
) -> dict[str, float]:
    """Latency statistics in milliseconds; `first_call_ms` includes compilation and caches.
    Warm-up runs `warmup` calls and goes on until `warmup_seconds` have passed."""
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    first = time.perf_counter() - start
    calls = 1
    while calls < warmup or time.perf_counter() - start < warmup_seconds:
        fn()
        synchronize()
        calls += 1
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {
        "median": statistics.median(times) * 1e3,
        "q25": quartiles[0] * 1e3,
        "q75": quartiles[2] * 1e3,
        "min": min(times) * 1e3,
        "max": max(times) * 1e3,
        "repeats": len(times),
        "first_call_ms": first * 1e3,
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _reset_kernel_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _kernel_peak_bytes() -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(r"VmHWM:\s+(\d+)\s+kB", handle.read()).group(1)) * 1024


class _RssSampler(threading.Thread):
    def __init__(self, interval_s: float = 1e-3):
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak = _rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_bytes())


def _release_free_memory() -> None:
    """Returns freed heap pages to the OS (glibc `malloc_trim`), so that the call measured next
    has to fault its memory in again rather than reuse what earlier calls left cached."""
    gc.collect(1)  # the young generations: a full collection costs ~0.5 s with transformers loaded
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Peak memory of one call of `fn`, in MiB: absolute `peak_mb` and `delta_mb` over the
    memory in use before it. See the module docstring for what each method counts."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak, method = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    else:
        _release_free_memory()
        before = _rss_bytes()
        if _reset_kernel_peak():
            fn()
            peak, method = _kernel_peak_bytes(), "rss high-water mark (VmHWM)"
        else:
            sampler = _RssSampler()
            sampler.start()
            try:
                fn()
            finally:
                peak = sampler.stop()
            method = "rss sampled every 1 ms"
    return {"peak_mb": peak / 2**20, "delta_mb": max(peak - before, 0) / 2**20, "method": method}


# ----- one model ---------------------------------------------------------------------------------
def _codes_of(output) -> torch.Tensor | None:
    return getattr(output, "codes", output) if not torch.is_tensor(output) else output


def _values_of(output) -> torch.Tensor:
    return output if torch.is_tensor(output) else output.values


def _tokens_per_item(encoded) -> float:
    if encoded.codes is None:
        return float(encoded.latents.shape[1]) if encoded.latents is not None else float("nan")
    codes = encoded.codes
    positions = codes.shape[-1] if encoded.codes_mask is None else float(encoded.codes_mask.float().sum(-1).mean())
    return float(codes.shape[1] * positions)


def bench_model(
    spec: str,
    settings: BenchSettings,
    *,
    loader: Callable[[str], tuple] = load_variant,
    original: Callable | None = None,
) -> list[dict[str, Any]]:
    """Rows (one per batch size) for the model `spec`. `original(model)` builds the original
    implementation (an `OriginalImplementation`) when comparing."""
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    dtype = DTYPES[settings.dtype]
    model, processor = loader(spec)
    model = cast_model(model.to(device).eval(), dtype)
    facts = {
        "model": spec,
        "family": model.config.model_type,
        "modality": model.modality,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "device": str(device),
        "dtype": settings.dtype,
        "compiled": settings.compile,
    }
    encode, decode = model.encode, model.decode
    reference = None
    if original is not None:
        reference = original(model)
    if settings.compile:
        encode, decode = torch.compile(encode), torch.compile(decode)
        if reference is not None:
            reference = type(reference)(torch.compile(reference.encode), torch.compile(reference.decode))

    synchronize = _synchronizer(device)

    def timed(fn):
        return time_calls(
            fn, repeats=settings.repeats, warmup=settings.warmup, warmup_seconds=settings.warmup_seconds,
            synchronize=synchronize,
        )

    rows = []
    for batch_size in settings.batch_sizes:
        row = {**facts, "batch_size": int(batch_size)}
        try:
            inputs, seconds = example_inputs(model, processor, int(batch_size), settings.audio_seconds)
            inputs = _prepare_inputs(inputs, device, dtype)
            with torch.inference_mode():
                encoded = encode(**inputs, **settings.encode_options)
                decode_kwargs = decode_arguments(encoded)
                row["encode_ms"] = timed(lambda: encode(**inputs, **settings.encode_options))
                row["decode_ms"] = timed(lambda: decode(**decode_kwargs, **settings.decode_options))
                row["encode_memory"] = measure_peak_memory(lambda: encode(**inputs, **settings.encode_options), device)
                row["decode_memory"] = measure_peak_memory(lambda: decode(**decode_kwargs, **settings.decode_options), device)
                if reference is not None:
                    row["original"] = _bench_original(reference, inputs, decode_kwargs, encoded, decode(**decode_kwargs), timed)
            _add_rates(row, encoded, seconds, int(batch_size))
            if reference is not None:
                row["original"]["encode_ratio"] = row["original"]["encode_ms"]["median"] / row["encode_ms"]["median"]
                row["original"]["decode_ratio"] = row["original"]["decode_ms"]["median"] / row["decode_ms"]["median"]
        except Exception as error:  # one failing configuration must not hide the others' rows
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        rows.append(row)
    return rows


def _add_rates(row: dict, encoded, seconds: float | None, batch_size: int) -> None:
    row["input"] = f"{seconds:g} s audio" if seconds is not None else f"{row['modality']} item"
    row["encode_items_per_s"] = batch_size / (row["encode_ms"]["median"] / 1e3)
    row["decode_items_per_s"] = batch_size / (row["decode_ms"]["median"] / 1e3)
    row["tokens_per_item"] = _tokens_per_item(encoded)
    if seconds is not None:
        row["audio_seconds"] = seconds
        row["tokens_per_second"] = row["tokens_per_item"] / seconds
        row["encode_rtf"] = (row["encode_ms"]["median"] / 1e3) / (seconds * batch_size)
        row["decode_rtf"] = (row["decode_ms"]["median"] / 1e3) / (seconds * batch_size)


def _bench_original(reference, inputs, decode_kwargs, encoded, decoded, timed) -> dict:
    """Times the original on the same inputs (and on our codes for decode) and says how close
    its outputs are to ours."""
    original_codes = _codes_of(reference.encode(**inputs))
    ours = decoded.values.float()
    theirs = _values_of(reference.decode(**decode_kwargs)).float()
    result = {"encode_ms": timed(lambda: reference.encode(**inputs)), "decode_ms": timed(lambda: reference.decode(**decode_kwargs))}
    codes = encoded.codes
    same_shape = codes is not None and torch.is_tensor(original_codes) and original_codes.shape == codes.shape
    result["codes_match"] = float((original_codes.to(codes.device) == codes).float().mean()) if same_shape else None
    result["values_max_abs_diff"] = float((ours - theirs.to(ours.device)).abs().max()) if ours.shape == theirs.shape else None
    return result


# ----- the whole run -------------------------------------------------------------------------
def machine_info(device: str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            match = re.search(r"^model name\s*:\s*(.+)$", handle.read(), re.MULTILINE)
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    info["cpu"] = cpu
    info["cpu_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["torch_threads"] = torch.get_num_threads()
    if hasattr(os, "getloadavg"):  # other work on the machine shows up in the spreads
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    try:
        with open("/proc/meminfo") as handle:
            kilobytes = int(re.search(r"MemTotal:\s+(\d+)", handle.read()).group(1))
            info["memory_gb"] = round(kilobytes / 2**20, 1)
    except (OSError, AttributeError):
        pass
    if str(device).startswith("cuda") and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = properties.name
        info["gpu_memory_gb"] = round(properties.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def run_benchmark(
    models: Iterable[str],
    settings: BenchSettings,
    *,
    loader: Callable[[str], tuple] = load_variant,
    compare_original: str | Path | None = None,
    original_plugin: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmarks every model and returns `{"machine", "settings", "rows"}`."""
    from .originals import load_original

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads_before = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(int(settings.threads))
    rows = []
    try:
        for spec in models:
            if log:
                log(f"bench {spec} ...")
            original = None
            if compare_original is not None:
                def original(model, _checkout=compare_original):
                    return load_original(model.config.model_type, _checkout, model, original_plugin)
            try:
                rows += bench_model(spec, settings, loader=loader, original=original)
            except Exception as error:
                rows.append({"model": spec, "error": f"{type(error).__name__}: {error}".splitlines()[0][:300]})
        machine = machine_info(settings.device)
    finally:
        torch.set_num_threads(threads_before)
    if load_at_start is not None:
        machine["load_average_1m"] = {"start": round(load_at_start, 2), "end": machine["load_average_1m"]}
    return {
        "machine": machine,
        "settings": {**asdict(settings), "batch_sizes": list(settings.batch_sizes), "tag": settings.tag},
        "environment": environment(settings.device),
        "compare_original": None if compare_original is None else str(compare_original),
        "rows": rows,
    }


# ----- output --------------------------------------------------------------------------------
def _ms(stats: dict) -> str:
    half_iqr = (stats["q75"] - stats["q25"]) / 2
    return f"{stats['median']:.3g} ± {half_iqr:.2g}"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"


def describe_machine(machine: dict) -> str:
    text = f"{machine['cpu']}, {machine['cpu_cores']} cores, torch threads: {machine['torch_threads']}"
    if "memory_gb" in machine:
        text += f", {machine['memory_gb']} GB RAM"
    load = machine.get("load_average_1m")
    if isinstance(load, dict):  # other processes competing for the cores inflate latencies
        text += f", load average {load['start']:g} at start / {load['end']:g} at end"
    if "gpu" in machine:
        text += f"; {machine['gpu']} ({machine['gpu_memory_gb']} GB, CUDA {machine['cuda']})"
    return text + f"; torch {machine['torch']}, Python {machine['python']}, {machine['platform']}"


def _busy_warning(machine: dict) -> list[str]:
    load = machine.get("load_average_1m")
    start = load.get("start") if isinstance(load, dict) else load
    if start is None or start <= machine["cpu_cores"]:
        return []
    return [
        f"Warning: other processes kept the cores busy (load average {start:g} on {machine['cpu_cores']} cores); "
        "latencies are inflated, most with more than one torch thread (threads wait on each other at every barrier)."
    ]


def render_markdown(result: dict) -> str:
    settings, machine = result["settings"], result["machine"]
    paragraphs = [
        f"Machine: {describe_machine(machine)}.",
        f"Settings: device {settings['device']}, {settings['dtype']}, {'torch.compile' if settings['compile'] else 'eager'}, "
        f"{settings.get('threads') or 'default'} torch thread(s), "
        f"{settings['repeats']} timed runs after {settings['warmup']} warm-up, audio inputs {settings['audio_seconds']:g} s"
        + "".join(f", {kind} options {settings[key]}" for kind, key in (("encode", "encode_options"), ("decode", "decode_options")) if settings.get(key))
        + (" (smoke run: not a measurement)" if settings["smoke"] else "") + ".",
        *_busy_warning(machine),
        "Latency: median ± half the interquartile range, in ms per batch. RTF: processing time / audio duration "
        "(< 1 is faster than real time). Memory: peak during one call, in MiB (absolute / increase over the call's start).",
    ]
    lines = [f"## {settings['tag']}", ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    lines += [
        "| model | params | batch | encode ms | decode ms | encode items/s | decode items/s | RTF enc / dec "
        "| peak MiB enc | peak MiB dec | codes/item | codes/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    comparisons = []
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['model']} | | {row.get('batch_size', '')} | error: {row['error']} | | | | | | | | |")
            continue
        rtf = f"{_number(row['encode_rtf'])} / {_number(row['decode_rtf'])}" if "encode_rtf" in row else "–"
        memory = [f"{row[key]['peak_mb']:.0f} / +{row[key]['delta_mb']:.1f}" for key in ("encode_memory", "decode_memory")]
        lines.append(
            f"| {row['model']} | {row['parameters'] / 1e6:.3g}M | {row['batch_size']} | {_ms(row['encode_ms'])} | "
            f"{_ms(row['decode_ms'])} | {_number(row['encode_items_per_s'])} | {_number(row['decode_items_per_s'])} | {rtf} | "
            f"{memory[0]} | {memory[1]} | {_number(row['tokens_per_item'])} | {_number(row.get('tokens_per_second'))} |"
        )
        if "original" in row:
            original = row["original"]
            comparisons.append(
                f"| {row['model']} | {row['batch_size']} | {_ms(original['encode_ms'])} | {original['encode_ratio']:.2f}x | "
                f"{_ms(original['decode_ms'])} | {original['decode_ratio']:.2f}x | {_number(original['codes_match'])} | "
                f"{_number(original['values_max_abs_diff'])} |"
            )
    if comparisons:
        lines += [
            "",
            f"Original implementation ({result['compare_original']}), same weights and inputs, same run. "
            "Ratio: original latency / modalzoo latency (> 1: modalzoo is faster).",
            "",
            "| model | batch | original encode ms | encode ratio | original decode ms | decode ratio | codes match | max |Δ values| |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *comparisons,
        ]
    return "\n".join(lines) + "\n"


def plot_throughput(result: dict, path: str | Path) -> Path | None:
    """Items/s against batch size, encode and decode side by side; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [row for row in result["rows"] if "error" not in row]
    batch_sizes = sorted({row["batch_size"] for row in rows})
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for axis, stage in zip(axes, ("encode", "decode")):
        for model in dict.fromkeys(row["model"] for row in rows):
            points = sorted((row["batch_size"], row[f"{stage}_items_per_s"]) for row in rows if row["model"] == model)
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
        axis.set_xscale("log", base=2)
        axis.set_xticks(batch_sizes, [str(size) for size in batch_sizes])
        axis.minorticks_off()
        axis.set_yscale("log")
        axis.set_xlabel("batch size")
        axis.set_ylabel("items / s")
        axis.set_title(f"{stage} throughput")
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    seconds = result["settings"]["audio_seconds"]
    figure.suptitle(
        f"modalzoo bench {result['settings']['tag']}: {result['machine']['cpu']} (audio items: {seconds:g} s clips)",
        fontsize="medium",
    )
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(result: dict, output_dir: str | Path) -> dict[str, Path]:
    """`<output_dir>/<tag>.json`, `.md` and (with matplotlib) `.png`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = output_dir / result["settings"]["tag"]
    paths = {"json": stem.with_suffix(".json"), "markdown": stem.with_suffix(".md")}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["markdown"].write_text(render_markdown(result))
    plot = plot_throughput(result, stem.with_suffix(".png"))
    if plot is not None:
        paths["plot"] = plot
    return paths
