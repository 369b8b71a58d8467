"""`--with-code` export: flat module files, relative imports only, auto_map pointing at them.
(Loading them where modalzoo is not importable is in test_hub_roundtrip.py.)"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import modalzoo
from modalzoo.hub import RemoteCodeError, export_remote_code
from modalzoo.registry import FAMILIES, Family, tiny_variant

TINY = {name: tiny_variant(name) for name in FAMILIES if tiny_variant(name)}


@pytest.mark.parametrize("family", sorted(TINY))
def test_exported_code_imports_only_its_own_files(family, tmp_path):
    modalzoo.create_model(TINY[family]).save_pretrained(tmp_path)
    modalzoo.create_processor(TINY[family]).save_pretrained(tmp_path)
    auto_map = export_remote_code(tmp_path, family)

    modules = {path.stem: ast.parse(path.read_text()) for path in tmp_path.glob("*.py")}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] != "modalzoo", f"{name} imports {node.module}"
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 and node.module in modules, f"{name}: from {'.' * node.level}{node.module}"
            elif isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "modalzoo" for alias in node.names)

    config = json.loads((tmp_path / "config.json").read_text())
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["auto_map"] == auto_map
    processor_auto = "AutoImageProcessor" if FAMILIES[family].modality == "image" else "AutoFeatureExtractor"
    assert processor["auto_map"] == {processor_auto: auto_map[processor_auto]}
    for auto, reference in auto_map.items():
        module, class_name = reference.split(".")
        defined = {node.name for node in ast.walk(modules[module]) if isinstance(node, ast.ClassDef)}
        assert class_name in defined, f"{auto}: {reference}"
    assert auto_map["AutoModel"] == f"{FAMILIES[family].model_class.__module__.rsplit('.', 1)[1]}.{FAMILIES[family].model_class.__name__}"


def test_modules_that_register_classes_are_refused(tmp_path):
    reference = FAMILIES["reference_image"]

    class PackageLevelConfig(reference.config_class):  # as if defined in a family's __init__.py
        pass

    PackageLevelConfig.__module__ = "modalzoo.models.reference"
    family = Family("reference_image", PackageLevelConfig, reference.model_class, reference.processor_class)
    with pytest.raises(RemoteCodeError, match="registers classes"):
        export_remote_code(tmp_path, family)


def test_header_names_the_source_file(tmp_path):
    export_remote_code(tmp_path, "reference_audio")
    header = (tmp_path / "modalzoo_modeling_utils.py").read_text().splitlines()[0]
    assert header == f"# Exported by modalzoo {modalzoo.__version__} from modalzoo/modeling_utils.py for trust_remote_code; do not edit."
    assert not (tmp_path / "config.json").exists()  # nothing to annotate in an empty folder
    assert sorted(p.name for p in Path(tmp_path).glob("*.py"))[:2] == ["configuration_reference.py", "modalzoo_modeling_utils.py"]
