"""The documentation holds: docstring examples run, every shell command in README.md and
docs/*.md is run here or marked as needing what this machine lacks, relative links resolve,
the extension examples run, and docs/spec-reference.md is the generated reference."""

import doctest
import importlib
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import specsweep

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULES = sorted(info.name for info in pkgutil.walk_packages(specsweep.__path__, "specsweep."))
SHELL = {"bash", "sh", "shell", "console"}
# A fenced shell block that tests must not run says why on the line before its fence.
NOT_RUN = re.compile(r"^<!-- not run: .+ -->$")
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", flags=re.S | re.M)


def _blocks(path):
    """``(language, body, line before the fence)`` of each fenced block of ``path``."""
    text = path.read_text()
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        yield match.group(1), match.group(2), before


def _commands(body):
    """The command lines of a shell block: continuations joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def _unmarked_commands():
    """Each distinct command of the unmarked shell blocks, once."""
    seen = set()
    for path in DOCS:
        for language, body, before in _blocks(path):
            if language in SHELL and not NOT_RUN.match(before.strip()):
                for words in _commands(body):
                    if shlex.join(words) not in seen:
                        seen.add(shlex.join(words))
                        yield pytest.param(words, id=f"{path.relative_to(ROOT)}: {shlex.join(words)}")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


@pytest.mark.parametrize("words", list(_unmarked_commands()))
def test_doc_command_runs(words, tmp_path):
    """An unmarked shell command of the docs is a specsweep command that succeeds here, run
    through the command line in a fresh process from the repository root."""
    if words[:3] == ["python", "-m", "specsweep"]:
        words = words[3:]
    elif words[:1] == ["specsweep"]:
        words = words[1:]
    else:
        pytest.fail(f"{shlex.join(words)!r} is not run by this test: run it here or mark its block with "
                    f"'<!-- not run: needs ... -->' on the line before the fence")
    env = {**os.environ, "SPECSWEEP_CACHE": str(tmp_path / "cache"), "SPECSWEEP_STORAGE": str(tmp_path / "runs"),
           "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-m", "specsweep", *words], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()


def test_not_run_marks_name_a_reason():
    """Every block the tests skip says what it needs, and the mark stands right before a fence."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.strip().startswith("<!-- not run"):
                assert NOT_RUN.match(line.strip()), f"{path.name}:{number + 1}: {line!r}"
                assert number + 1 < len(lines) and lines[number + 1].startswith("```"), \
                    f"{path.name}:{number + 1}: a not-run mark must stand on the line before a fence"


def _anchors(path):
    """GitHub's anchors of the headings of a Markdown file."""
    text = FENCE.sub("", path.read_text())
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_relative_links_resolve():
    """Every relative link and image of README.md and docs/*.md names a file that exists
    (and a heading of it, for an anchor); the docs other branches add count once present."""
    broken = []
    for path in DOCS:
        text = FENCE.sub("", path.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_docs_link_every_guide():
    """README.md and the docs index reach every guide."""
    guides = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")}
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "docs" / "README.md").read_text()
    for guide in sorted(guides - {"docs/README.md"}):
        assert f"]({guide})" in readme, f"README.md does not link {guide}"
        assert f"]({guide.removeprefix('docs/')})" in index, f"docs/README.md does not link {guide}"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_extending_examples_register_and_assemble(tmp_path):
    """docs/extending.md's example of each registry (front-end, backbone, dataset, task,
    searcher, scheduler), run as one script in a fresh process so its registrations stay out
    of the suite's registries: together they validate a spec and assemble its trial."""
    blocks = [body for language, body, _ in _blocks(ROOT / "docs" / "extending.md") if language == "python"]
    assert len(blocks) == 6
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_spec_reference_is_generated():
    """docs/spec-reference.md is what ``python -m specsweep.reference`` prints now."""
    from specsweep.reference import reference

    committed = (ROOT / "docs" / "spec-reference.md").read_text()
    assert committed == reference(), \
        "docs/spec-reference.md is out of date: python -m specsweep.reference > docs/spec-reference.md"


def _model_keys(model, prefix):
    from pydantic import BaseModel

    for key, field in model.model_fields.items():
        yield f"{prefix}{key}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _model_keys(annotation, f"{key}.")


def _section(text, heading):
    """The part of ``text`` from ``heading`` to the next heading of its level or above."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    level = heading.split(" ")[0]
    ends = [end for end in (text.find(f"\n{'#' * n} ", start) for n in range(1, len(level) + 1)) if end >= 0]
    return text[start:min(ends, default=len(text))]


def _flags(parser, command=""):
    """``(command, --flag)`` of every command under ``parser``."""
    for action in parser._actions:
        for name, sub in (getattr(action, "choices", None) or {}).items():
            yield from _flags(sub, f"{command} {name}".strip())
        if command:
            yield from ((command, flag) for flag in action.option_strings if flag.startswith("--"))


def test_spec_reference_names_every_key_and_component():
    """Every schema key, every registered component with each of its arguments, every
    recipe, task, searcher, scheduler and command flag has its row in the reference."""
    from specsweep.backbones import BACKBONES, backbone_param_names
    from specsweep.cli import build_parser
    from specsweep.data.datasets import DATASETS, dataset_param_names
    from specsweep.frontends import FRONTENDS, frontend_param_names
    from specsweep.recipes import RECIPES
    from specsweep.search import SCHEDULERS, SEARCHERS
    from specsweep.spec import SearchParam, SweepSpec
    from specsweep.tasks import TASKS

    text = (ROOT / "docs" / "spec-reference.md").read_text()
    missing = [key for key in _model_keys(SweepSpec, "") if f"| `{key}` |" not in text]
    missing += [f"search.space.KEY.{key}" for key in SearchParam.model_fields
                if f"| `search.space.KEY.{key}` |" not in text]
    for section, registry, params in (("data", DATASETS, dataset_param_names),
                                      ("frontend", FRONTENDS, frontend_param_names),
                                      ("backbone", BACKBONES, backbone_param_names)):
        for name in registry.names():
            block = _section(text, f"### `{name}`")
            missing += [f"{section} {name}.{key}" for key in sorted(params(name)) if f"| `{section}.{key}` |" not in block]
    for heading, registry in (("## Recipes (`recipe`)", RECIPES), ("## Tasks (`task`)", TASKS),
                              ("## Searchers (`search.algorithm`)", SEARCHERS),
                              ("## Schedulers (`scheduler.name`)", SCHEDULERS)):
        block = _section(text, heading)
        missing += [f"{heading}: {name}" for name in registry.names() if f"`{name}`" not in block]
    for command, flag in _flags(build_parser()):
        if flag not in ("--help", "--debug") and f"`{flag}`" not in _section(text, f"### `specsweep {command}`"):
            missing.append(f"specsweep {command} {flag}")
    assert not missing, "missing from docs/spec-reference.md:\n" + "\n".join(missing)


def test_doc_specs_validate():
    """Every YAML block of the docs that is a whole spec (it names a task) validates."""
    import yaml

    from specsweep.spec import validate_spec

    specs = [(path, body) for path in DOCS for language, body, _ in _blocks(path)
             if language == "yaml" and re.search(r"^task:", body, flags=re.M)]
    assert specs
    for path, body in specs:
        validate_spec(yaml.safe_load(body), source=path.name)
