"""Maps the top-level `training/`, `conversion/` and `model_cards/` folders into the `modalzoo` namespace.

Everything else about the package lives in pyproject.toml; this file exists only because the
package list must be computed (subpackages of the mapped folders) and pyproject cannot express it.
"""

from setuptools import find_packages, setup

MAPPED_FOLDERS = {
    "modalzoo.training": "training",
    "modalzoo.conversion": "conversion",
    # card templates (data only): modalzoo.hub.cards finds them as modalzoo/model_cards when installed
    "modalzoo.model_cards": "model_cards",
}

packages = find_packages(include=["modalzoo", "modalzoo.*"])
package_dir = {"modalzoo": "modalzoo"}
for namespace, folder in MAPPED_FOLDERS.items():
    packages.append(namespace)
    package_dir[namespace] = folder
    for sub in find_packages(where=folder):
        packages.append(f"{namespace}.{sub}")
        package_dir[f"{namespace}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
