"""`pip install ./python` works offline (python/README.md): no build isolation,
no index, setuptools from Debian; the installed package imports and opens a
cache on its own."""

import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_pip_install_offline(env, tmp_path):
    src = tmp_path / "src"  # a copy, so pip's build files stay out of the checkout
    shutil.copytree(os.path.join(REPO, "python"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                        "--no-index", "--no-deps", "--quiet", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = ("import kdcache, sys; c = kdcache.open(sys.argv[1]); "
            "print(kdcache.__file__, c.num_images)")
    r = subprocess.run([sys.executable, "-c", code, env.ref16], capture_output=True, text=True,
                       cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": str(target)})
    assert r.returncode == 0, r.stderr
    path, n = r.stdout.split()
    assert path.startswith(str(target)) and n == "18"
