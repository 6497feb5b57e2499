#!/usr/bin/env bash
# The wheels bench/gpu_session.sh installs on a lent GPU machine, which has PyTorch,
# Lightning, torchmetrics, NumPy, SciPy, matplotlib, PyYAML and pytest but no network:
# downloaded here into .whl/ (git-ignored) for its Python 3.12 on x86-64.
#
#   bash bench/gpu_wheels.sh && run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=570)
set -eu
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  nnaudio==0.3.4 pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 \
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 speechbrain==1.1.2 hyperpyyaml==1.2.3 ruamel_yaml==0.18.17 \
  ruamel_yaml_clib==0.2.15
du -sh .whl
