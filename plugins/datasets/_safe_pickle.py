"""A restricted unpickler for data files that are pickles (CIFAR-10's python batches).

Unpickling runs code: a pickle may ask for any importable callable (``os.system``) and call
it. :func:`load_pickle` only resolves the globals that numpy arrays need; anything else is
refused with a :class:`DataError` before it is imported, so nothing runs.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

import numpy as np

from optlab import DataError

__all__ = ["ALLOWED_GLOBALS", "load_pickle"]

#: (module, name) pairs a numpy array (any pickle protocol, numpy 1.x or 2.x, Python 2 or 3
#: writer) needs; dict, list, bytes and str are pickle opcodes and need no global.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # bytes written with protocol < 3 by Python 3 are rebuilt by _codecs.encode
        ("_codecs", "encode"),
    }
)


#: numpy 2 moved ``numpy.core`` to ``numpy._core`` (the old name still imports, with a warning)
_RENAMED: dict[str, str] = (
    {"numpy.core.multiarray": "numpy._core.multiarray", "numpy.core.numeric": "numpy._core.numeric"}
    if hasattr(np, "_core")
    else {}
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], where: str, key: str) -> None:
        super().__init__(file, encoding="bytes")
        self._where, self._key = where, key

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"{self._where}: refused to unpickle '{module}.{name}' (only numpy array data is "
                "allowed in this file); the file is not a genuine dataset batch",
                key=self._key,
            )
        return super().find_class(_RENAMED.get(module, module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._where}: refused a persistent id in the pickle", key=self._key)


def load_pickle(data: bytes | IO[bytes], where: str, key: str = "path") -> Any:
    """Unpickle ``data`` allowing only numpy array globals.

    Parameters
    ----------
    data : bytes or binary file
    where : str
        The file's path (or ``archive:member``), for messages.
    key : str
        The param that names the file (the errors' :attr:`~optlab.InputError.key`).

    Raises
    ------
    DataError
        When the pickle asks for anything else, or is truncated or corrupt.
    """
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _RestrictedUnpickler(stream, where, key).load()
    except DataError:
        raise
    except Exception as exc:  # any failure of a corrupt pickle is a data problem
        detail = str(exc) or type(exc).__name__
        raise DataError(
            f"{where}: not a readable pickle (truncated or corrupt: {detail})", key=key
        ) from exc
