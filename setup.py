"""Build of optlab's one compiled module, ``optlab_plugins.compiled._kernels``, the bundled
compiled backend's kernels (metadata is in pyproject.toml).

The module is optional: on a machine without a C compiler, or not x86-64, the build goes on
without it, the compiled backend says it cannot run, and optlab trains with the numpy backend
(see ``optlab/_contract/backend.py``).
"""

import platform

from setuptools import Extension, setup

X86_64 = platform.machine().lower() in {"x86_64", "amd64"}

setup(
    ext_modules=[
        Extension(
            "optlab_plugins.compiled._kernels",
            ["plugins/compiled/_kernels.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
    if X86_64
    else [],
)
