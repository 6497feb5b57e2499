"""The examples in the package's docstrings run and print what they show."""

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import specsweep

MODULES = sorted(info.name for info in pkgutil.walk_packages(specsweep.__path__, "specsweep."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_readme_development_examples_register_and_assemble(tmp_path):
    """The README's example of each registry (front-end, backbone, dataset, task, searcher,
    scheduler), run as one script in a fresh process so its registrations stay out of the
    suite's registries: together they validate a spec and assemble its trial."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    development = readme[readme.index("## Development"):]
    blocks = re.findall(r"```python\n(.*?)```", development, flags=re.S)
    assert len(blocks) == 6
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
