"""save / load a state_dict as a NumPy .npz archive: no pickle, written atomically.

The archive is written to a temporary file in the target's directory, flushed to disk, then moved over
the target with os.replace, so an interrupted save leaves the previous file as it was.
"""

import os
import tempfile
import zipfile

import numpy as np


def save(state_dict, path):
    """Write {name: array} to ``path`` (.npz, one .npy member per name, object arrays refused)."""
    path = os.fspath(path)
    arrays = {}
    for name, value in state_dict.items():
        value = np.asarray(value.data if hasattr(value, "grad") and hasattr(value, "data") else value)
        if not isinstance(name, str) or value.dtype.hasobject:
            raise TypeError(f"save: {path}: entry {name!r} must be a str name and a numeric array, "
                            f"got {value.dtype}")
        arrays[name] = value
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the permissions an ordinary new file gets (mkstemp makes it private)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, value in arrays.items():  # as np.savez does, but names like "file" are safe
                    with archive.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, value, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load(path):
    """Read a file written by save() into {name: ndarray}; anything else is a ValueError naming the path."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single array of shape {archive.shape}, not named arrays")
        with archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # NumPy's own text for a pickle suggests loading it unsafely: never say that about a checkpoint
        reason = "it is not a .npz archive (pickled data is never loaded)" if "pickle" in str(e) else \
            f"{type(e).__name__}: {e}"
        raise ValueError(
            f"load: {path} is not a readable tinygrad_attn checkpoint (a .npz written by save(); pickled, "
            f"truncated or foreign files are refused): {reason}"
        ) from None
