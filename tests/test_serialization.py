"""tinygrad_attn.serialization: .npz round trip, atomic writes, and refusing what is not a checkpoint."""

import os
import pickle

import numpy as np
import pytest

from tinygrad_attn import manual_seed, nn
from tinygrad_attn.serialization import load, save


def _model(seed):
    manual_seed(seed)
    return nn.make_model(7, 7, N=1, d_model=8, d_ff=16, h=2, dropout=0.0).eval()


def test_round_trip_keeps_names_dtypes_values_and_model_outputs(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = {"encoder.layers.0.w_q.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
             "file": np.array([1.5]), "step": np.array(3, dtype=np.int64)}  # "file" would trip np.savez
    save(state, path)
    back = load(path)
    assert list(back) == list(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    a, b = _model(0), _model(1)
    src, tgt = np.array([[1, 2, 3]]), np.array([[1, 4]])
    assert not np.allclose(a(src, tgt).data, b(src, tgt).data)
    save(a.state_dict(), str(path))
    b.load_state_dict(load(path))
    np.testing.assert_array_equal(a(src, tgt).data, b(src, tgt).data)


def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"w": np.ones(3)}, path)
    real = np.lib.format.write_array
    calls = []

    def crash_on_second(fp, array, **kw):
        calls.append(1)
        if len(calls) == 2:
            fp.write(b"half an array")
            raise KeyboardInterrupt("power cut")
        return real(fp, array, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        save({"w": np.zeros(3), "v": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert len(calls) == 2
    np.testing.assert_array_equal(load(path)["w"], np.ones(3))
    assert os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.parametrize("write", [
    lambda f: pickle.dump({"w": np.ones(3)}, f),
    lambda f: np.save(f, np.array([{"w": 1}], dtype=object), allow_pickle=True),
    lambda f: f.write(b"PK\x03\x04 not really a zip"),
    lambda f: np.save(f, np.ones(3)),
], ids=["pickle", "pickled_npy", "garbage", "bare_npy"])
def test_pickled_or_foreign_files_are_refused_naming_the_path(tmp_path, write):
    path = tmp_path / "bad.npz"
    with open(path, "wb") as f:  # a file object, so np.save adds no .npy suffix
        write(f)
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(path) in str(info.value) and "not a readable tinygrad_attn checkpoint" in str(info.value)
    assert "allow_pickle" not in str(info.value)  # NumPy's advice to load it unsafely is not passed on
    assert os.listdir(tmp_path) == ["bad.npz"]


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(_model(0).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ckpt.npz"):
        load(path)


def test_object_arrays_are_not_saved_and_missing_files_say_so(tmp_path):
    with pytest.raises(TypeError, match="numeric array"):
        save({"w": np.array([{"a": 1}], dtype=object)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")


def test_save_and_load_are_at_the_package_top_level(tmp_path):
    import tinygrad_attn as tga
    from tinygrad_attn.nn import Linear

    layer = Linear(3, 2)
    tga.save(layer.state_dict(), tmp_path / "layer.npz")
    other = Linear(3, 2)
    other.load_state_dict(tga.load(tmp_path / "layer.npz"))
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], value)


def test_saved_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save({"w": np.ones(2)}, tmp_path / "w.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644  # as np.savez would; mkstemp makes 0600


def test_safetensors_round_trip_keeps_arrays_and_puts_text_in_the_header(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    path = tmp_path / "ckpt.safetensors"
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3).T, "step": np.array(3, dtype=np.int64),
             "config": np.asarray('{"d_model": 8}')}
    save(state, path)
    with safetensors.safe_open(str(path), framework="np") as f:  # readable by the library itself
        assert sorted(f.keys()) == ["step", "w"] and f.metadata() == {"config": '{"d_model": 8}'}
    back = load(path)
    assert sorted(back) == sorted(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    a, b = _model(0), _model(1)
    save(a.state_dict(), path)
    b.load_state_dict(load(path))
    src, tgt = np.array([[1, 2, 3]]), np.array([[1, 4]])
    np.testing.assert_array_equal(a(src, tgt).data, b(src, tgt).data)


def test_damaged_safetensors_file_is_refused_naming_the_path(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ValueError, match=f"load: {path} is not a readable safetensors file"):
        load(path)


@pytest.mark.parametrize("name", ["ckpt.npz", "ckpt.safetensors"])
def test_a_killed_writers_temporary_file_is_removed_by_the_next_save(tmp_path, name):
    if name.endswith(".safetensors"):
        pytest.importorskip("safetensors")
    dead = tmp_path / f".{name}.tmp-999999999-x1y2"  # no process has that id
    live = tmp_path / f".{name}.tmp-1-x1y2"  # pid 1 is alive: a save in progress elsewhere is left alone
    other = tmp_path / ".other.npz.tmp-999999999-x1y2"  # another target's temporary is not ours to remove
    for f in (dead, live, other):
        f.write_bytes(b"half a checkpoint")
    save({"w": np.ones(3)}, tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == sorted([name, live.name, other.name])


def test_load_state_dict_with_no_key_in_common_is_an_error_even_when_not_strict():
    model = _model(0)
    renamed = {"bert." + k: v for k, v in model.state_dict().items()}
    with pytest.raises(KeyError, match="no key matches"):
        _model(1).load_state_dict(renamed, strict=False)


def test_load_state_dict_partial_match_warns_and_returns_the_names():
    a, b = _model(0), _model(1)
    state = a.state_dict()
    dropped = next(iter(state))
    del state[dropped]
    state["extra.weight"] = np.zeros(2)
    with pytest.warns(UserWarning, match=f"missing: {dropped}; unexpected: extra.weight"):
        missing, unexpected = b.load_state_dict(state, strict=False)
    assert missing == [dropped] and unexpected == ["extra.weight"]
