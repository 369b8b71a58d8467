"""Export a family's code into a model folder, for `trust_remote_code=True` without modalzoo.

transformers' `register_for_auto_class` copies only the file that defines a class, and its
remote-code loader only follows *flat* relative imports (`from .module import Name`, files side
by side in the repo root). modalzoo families import shared code from parent packages
(`from ...modeling_utils import ModalTokenizer`), so this exporter:

1. starts from the family's configuration, modeling and processing modules;
2. follows every import that resolves to a modalzoo module (read with `ast`, so nothing is run);
3. writes each module as one flat file (family files keep their names, `configuration_titok.py`;
   shared ones are prefixed, `modalzoo_modeling_utils.py`) with those imports rewritten to
   `from .<flat name> import ...`;
4. adds `auto_map` to `config.json` and to `preprocessor_config.json`.

The exported modules may import installed third-party packages (torch, transformers,
vector_quantize_pytorch, ...) but never modalzoo itself; importing a module object
(`from ..layers import vit`) or the package's registering modules (`modalzoo`, `modalzoo.models`,
`registry`, a family's `__init__`) is refused, because the remote loader cannot follow them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

PACKAGE = "modalzoo"
# modules that register classes or pull in the whole package: never exported
_REFUSED = {PACKAGE, f"{PACKAGE}.models", f"{PACKAGE}.registry", f"{PACKAGE}.cli"}
_REFUSED_PREFIXES = (f"{PACKAGE}.hub", f"{PACKAGE}.conversion", f"{PACKAGE}.training")


class RemoteCodeError(ValueError):
    """The family's code cannot be exported as flat remote-code files."""


def _spec_origin(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RemoteCodeError(f"cannot find the source of {module}")
    return Path(spec.origin)


def _is_package(module: str) -> bool:
    return _spec_origin(module).name == "__init__.py"


def _is_submodule(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        return False


class _Exporter:
    def __init__(self, family_package: str):
        self.family_package = family_package
        self.flat_names: dict[str, str] = {}

    def flat_name(self, module: str) -> str:
        if module not in self.flat_names:
            if module.startswith(self.family_package + "."):
                name = module.rpartition(".")[2]
            else:
                name = "modalzoo_" + module.removeprefix(PACKAGE + ".").replace(".", "_")
            if name in self.flat_names.values():
                raise RemoteCodeError(f"two modules would be exported as {name}.py")
            self.flat_names[module] = name
        return self.flat_names[module]

    def _check_exportable(self, module: str, importer: str) -> None:
        refused = module in _REFUSED or module.startswith(_REFUSED_PREFIXES)
        family_init = module.startswith(f"{PACKAGE}.models.") and _is_package(module)
        if refused or family_init:
            raise RemoteCodeError(
                f"{importer} imports {module}, which registers classes or needs the whole package; "
                "import the defining module directly (e.g. `from ..titok.modeling_titok import X`)"
            )

    def _target(self, node: ast.ImportFrom, module: str) -> str | None:
        """The absolute module an ImportFrom names, if it is a modalzoo module."""
        if node.level:
            package = module if _is_package(module) else module.rpartition(".")[0]
            parts = package.split(".")
            if node.level - 1 >= len(parts):
                raise RemoteCodeError(f"{module}: relative import beyond the top-level package")
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        return target if target == PACKAGE or target.startswith(PACKAGE + ".") else None

    def rewrite(self, module: str) -> tuple[str, list[str]]:
        """(source of the flat file, modalzoo modules it imports)."""
        source = _spec_origin(module).read_text(encoding="utf-8")
        tree = ast.parse(source)
        line_offsets = [0]
        for line in source.encode("utf-8").splitlines(keepends=True):
            line_offsets.append(line_offsets[-1] + len(line))
        edits, needed = [], []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        raise RemoteCodeError(f"{module} uses `import {alias.name}`; use `from ... import Name` instead")
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            target = self._target(node, module)
            if target is None:
                continue
            self._check_exportable(target, module)
            for alias in node.names:
                if alias.name == "*":
                    raise RemoteCodeError(f"{module} star-imports from {target}")
                if _is_package(target) and _is_submodule(f"{target}.{alias.name}"):
                    raise RemoteCodeError(
                        f"{module} imports the module {target}.{alias.name} as an object; import names from it instead"
                    )
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
            start = line_offsets[node.lineno - 1] + node.col_offset
            end = line_offsets[node.end_lineno - 1] + node.end_col_offset
            edits.append((start, end, f"from .{self.flat_name(target)} import {names}"))
            needed.append(target)
        data = source.encode("utf-8")
        for start, end, text in sorted(edits, reverse=True):
            data = data[:start] + text.encode("utf-8") + data[end:]
        return data.decode("utf-8"), needed


def _update_json(path: Path, auto_map: dict[str, str]) -> None:
    content = json.loads(path.read_text(encoding="utf-8"))
    content["auto_map"] = {**content.get("auto_map", {}), **auto_map}
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_remote_code(folder: str | Path, family) -> dict[str, str]:
    """Writes the code of `family` (a name or a registry `Family`) into `folder` as flat modules
    and points `auto_map` at them in `config.json` / `preprocessor_config.json` (those present).
    Returns the auto_map: {"AutoConfig": "configuration_x.XConfig", "AutoModel": ..., ...}."""
    from .. import __version__
    from ..registry import FAMILIES

    family = FAMILIES[family] if isinstance(family, str) else family
    folder = Path(folder)
    classes = {"AutoConfig": family.config_class, "AutoModel": family.model_class}
    if family.processor_class is not None:
        processor_auto = "AutoImageProcessor" if family.modality == "image" else "AutoFeatureExtractor"
        classes[processor_auto] = family.processor_class
    exporter = _Exporter(family.config_class.__module__.rpartition(".")[0])
    auto_map = {auto: f"{exporter.flat_name(cls.__module__)}.{cls.__name__}" for auto, cls in classes.items()}

    pending, written = [cls.__module__ for cls in classes.values()], {}
    while pending:
        module = pending.pop()
        if module in written:
            continue
        source, needed = exporter.rewrite(module)
        origin = _spec_origin(module)
        relative = origin.as_posix().split(f"/{PACKAGE}/", 1)[-1]
        header = f"# Exported by modalzoo {__version__} from {PACKAGE}/{relative} for trust_remote_code; do not edit.\n"
        path = folder / f"{exporter.flat_name(module)}.py"
        path.write_text(header + source, encoding="utf-8")
        written[module] = path
        pending.extend(needed)

    _check_flat_imports(list(written.values()))
    processor_map = {k: v for k, v in auto_map.items() if k in ("AutoImageProcessor", "AutoFeatureExtractor")}
    if (folder / "config.json").is_file():
        _update_json(folder / "config.json", auto_map)
    if processor_map and (folder / "preprocessor_config.json").is_file():
        _update_json(folder / "preprocessor_config.json", processor_map)
    return auto_map


def _check_flat_imports(paths: list[Path]) -> None:
    """Every relative import transformers' loader will look for must be an exported file."""
    from transformers.dynamic_module_utils import get_relative_imports

    names = {path.stem for path in paths}
    for path in paths:
        missing = sorted(set(get_relative_imports(path)) - names)
        if missing:
            raise RemoteCodeError(f"{path.name} imports {', '.join(missing)}, which were not exported")
