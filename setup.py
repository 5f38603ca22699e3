"""Build of optlab's one compiled module, ``optlab._kernels`` (metadata is in pyproject.toml).

The module is optional: on a machine without a C compiler, or not x86-64, the build goes on
without it and optlab uses numpy for that product (see ``optlab/kernels.py``).
"""

import platform

from setuptools import Extension, setup

X86_64 = platform.machine().lower() in {"x86_64", "amd64"}

setup(
    ext_modules=[
        Extension(
            "optlab._kernels",
            ["optlab/_kernels.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
    if X86_64
    else [],
)
