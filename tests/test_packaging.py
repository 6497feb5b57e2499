"""The conda environment and the pip package must ask for the same pinned libraries."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip_section) == wanted
    assert "python=3.11" in env["dependencies"]


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in dep, f"{dep} is not pinned"


def test_every_data_file_of_the_package_is_shipped():
    """Files of the package other than Python modules (the paper's claims the report judges)
    are named as package data, so that an installed copy (not only the source tree) has them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {f"{package.replace('.', '/')}/{name}" for package, names in config.get("package-data", {}).items()
               for name in names}
    data = {str(path.relative_to(ROOT)) for path in (ROOT / "specsweep").rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc")}
    assert data and data <= shipped
