"""save / load a state_dict as .npz (NumPy) or .safetensors: no pickle either way, written atomically.

The format follows the extension. A file is written to a temporary file beside the target, flushed to disk,
then moved over the target with os.replace, so an interrupted save leaves the previous file as it was; a
temporary file left by a killed process is removed by the next save to the same path.
safetensors holds numeric tensors only: text entries (a run's config, say) go into its string header and
come back from load() as 0-d string arrays, exactly as .npz gives them.
"""

import glob
import math
import os
import tempfile
import zipfile

import numpy as np

from .tensor import unwrap


class CheckpointError(ValueError):
    """A file that cannot be a checkpoint, or one whose contents are wrong; the message names the file."""


def save(state_dict, path):
    """Write {name: array} to ``path``: .safetensors by that extension, else .npz (object arrays refused)."""
    path = os.fspath(path)
    arrays = {}
    for name, value in state_dict.items():
        value = unwrap(value)
        if not isinstance(name, str) or value.dtype.hasobject:
            raise TypeError(f"save: {path}: entry {name!r} must be a str name and a numeric array, "
                            f"got {value.dtype}")
        arrays[name] = value
    write = _write_safetensors if path.endswith(".safetensors") else _write_npz
    folder, base = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-{os.getpid()}-", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the permissions an ordinary new file gets (mkstemp makes it private)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f, arrays, path)
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


def _write_npz(f, arrays, path):
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():  # as np.savez does, but names like "file" are safe
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


def _write_safetensors(f, arrays, path):
    st = _safetensors(path)
    text = {k: str(v) for k, v in arrays.items() if v.dtype.kind == "U" and v.ndim == 0}
    bad = [k for k, v in arrays.items() if v.dtype.kind == "U" and v.ndim != 0]
    if bad:
        raise TypeError(f"save: {path}: safetensors holds text only as single strings; {bad[0]!r} is a "
                        f"{arrays[bad[0]].shape} array of strings")
    tensors = {k: v if v.flags.c_contiguous else v.copy() for k, v in arrays.items() if k not in text}
    f.write(st.numpy.save(tensors, metadata=text or None))


def remove_stale_temporaries(path):
    """Delete the temporary files that killed saves to ``path`` left behind (their writer is gone)."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(base)}.tmp-*")):
        pid = os.path.basename(tmp)[len(base) + 6:].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _alive(pid):
    if pid == os.getpid():
        return False  # our own leftover: a save in this process cleans up after itself, so this one is stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def _safetensors(path):
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(f'{path}: .safetensors files need the safetensors package: '
                          f'pip install "tinygrad_attn[pretrained]" (or save to .npz)') from None
    return safetensors


def load(path):
    """Read a file written by save() into {name: ndarray}; anything else is a CheckpointError naming the path."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        return _load_safetensors(path)
    try:
        if zipfile.is_zipfile(path):
            _check_sizes(path)
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single array of shape {archive.shape}, not named arrays")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (FileNotFoundError, IsADirectoryError, CheckpointError):
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # NumPy's own text for a pickle suggests loading it unsafely: never say that about a checkpoint
        reason = "it is not a .npz archive (pickled data is never loaded)" if "pickle" in str(e) else \
            f"{type(e).__name__}: {e}"
        raise CheckpointError(
            f"load: {path} is not a readable tinygrad_attn checkpoint (a .npz written by save(); pickled, "
            f"truncated or foreign files are refused): {reason}"
        ) from None


def _check_sizes(path):
    """Refuse an .npz whose .npy headers declare more data than their members hold, before reading any:
    a damaged header must not make NumPy allocate 10^12 elements."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                except (ValueError, EOFError):
                    continue  # np.load says what is wrong with the header itself
                needed = math.prod(shape) * dtype.itemsize
                held = info.file_size - member.tell()
                if needed > held:
                    raise CheckpointError(
                        f"load: {path}: {info.filename} declares shape {shape} of {dtype} ({needed:,} bytes) but "
                        f"holds {held:,} bytes; the file is damaged")


def _load_safetensors(path):
    st = _safetensors(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: {path}: no such file")
    try:
        with st.safe_open(path, framework="np") as f:
            out = {name: f.get_tensor(name) for name in f.keys()}
            text = f.metadata() or {}
    except Exception as e:  # safetensors has its own error type for a damaged header or a short file
        raise CheckpointError(f"load: {path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    out.update({name: np.asarray(value) for name, value in text.items() if name not in out})
    return out
