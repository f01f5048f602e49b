"""Extension list only; all metadata lives in pyproject.toml."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

cflags = ["-std=c11", "-Wall", "-D_GNU_SOURCE"]
ldflags = ["-lpthread"]
if os.environ.get("PYRAY_DEBUG") == "1":
    cflags += ["-O0", "-g"]
else:
    cflags += ["-O2"]
if os.environ.get("PYRAY_SANITIZE") == "1":
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    ldflags += ["-fsanitize=address,undefined"]

store = Extension(
    "plasma._store",
    sources=["plasma/_store.pyx"] + sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc"],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

setup(ext_modules=cythonize([store], language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False}))
