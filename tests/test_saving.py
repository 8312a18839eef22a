"""nnlib/saving.py and nnlib/_archive.py: safe model files (issue 5). Every crafted bad file of
``model_files.BAD_FILES`` is refused by ``load_model`` and ``load_weights`` with a ValueError naming the
problem and the file, within a memory bound, leaving the model it was loaded into exactly as it was; the
good file loads; loading never imports or calls what a file names; the saved layout and manifest; refusals
on save; layer state; format version 1 files; the model class a file names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from model_files import (
    BAD_BY_ID,
    BAD_FILES,
    BAD_IDS,
    MEMORY_BOUND,
    X,
    Y,
    assert_unchanged,
    bad_file,
    edit_config,
    edit_member,
    good_file,
    good_model,
    measured,
    npy,
    npy_header,
    read_members,
    snapshot,
    write_zip,
)

import nnlib as nn
from nnlib import saving


# -- the table --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", BAD_IDS)
def test_load_model_refuses(tmp_path, case_id):
    """load_model refuses the file with a ValueError (never an IndexError or another type) whose message
    matches the case's pattern and names the file, allocating less than MEMORY_BOUND."""
    path = bad_file(case_id, tmp_path)
    error, peak = measured(lambda: nn.load_model(path))
    assert not isinstance(error, IndexError), f"IndexError escaped: {error!r}"
    assert isinstance(error, ValueError), f"expected ValueError, got {error!r}"
    assert re.search(BAD_BY_ID[case_id][2], str(error)), str(error)
    assert str(path) in str(error)
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated"


@pytest.mark.parametrize("case_id", [c[0] for c in BAD_FILES if c[3] is not None])
def test_load_weights_refuses_and_changes_nothing(tmp_path, case_id):
    """load_weights refuses the file likewise, and the model keeps its build state, weights (values and
    dtypes), loss, metrics and optimizer (object, step count and state arrays). The model was trained with
    another optimizer than the file's, so its weights and state differ from the file's and a partial write
    of either would show."""
    path = bad_file(case_id, tmp_path)
    model = good_model(nn.Momentum(lr=0.05))
    before = snapshot(model)
    assert before["state"]  # the optimizer has state to lose
    error, peak = measured(lambda: model.load_weights(path))
    want = BAD_BY_ID[case_id][3]
    assert not isinstance(error, IndexError), f"IndexError escaped: {error!r}"
    assert isinstance(error, ValueError), f"expected ValueError, got {error!r}"
    assert re.search(BAD_BY_ID[case_id][2] if want == "same" else want, str(error)), str(error)
    assert peak < MEMORY_BOUND
    assert_unchanged(before, model)


def test_the_good_file_loads(tmp_path):
    """The table's files are all made from this one, which must load (else every refusal is vacuous)."""
    path = good_file(tmp_path)
    assert nn.load_model(path).optimizer.iterations == 6
    assert nn.load_model(write_zip(tmp_path / "again.nnlib", read_members(path))).optimizer.iterations == 6
    assert nn.load_model(write_zip(tmp_path / "stored.nnlib", read_members(path), method=zipfile.ZIP_STORED))
    model = good_model(nn.SGD(lr=0.1))
    model.load_weights(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        nn.load_model(tmp_path / "absent.nnlib")
    model = good_model()
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "absent.nnlib")
    with pytest.raises(ValueError, match="not a regular file"):
        nn.load_model(tmp_path)


def test_load_weights_into_other_shapes(tmp_path):
    path = tmp_path / "w.nnlib"
    good_model().save_weights(path)
    wider = nn.Sequential([nn.Dense(5, input_dim=3), nn.Dense(3)], seed=0)
    deeper = nn.Sequential([nn.Dense(4, input_dim=3), nn.Dense(3), nn.Dense(2)], seed=0)
    with pytest.raises(ValueError, match=r"weights/0000\.npy has shape \(3, 4\), the model needs \(3, 5\)"):
        wider.load_weights(path)
    with pytest.raises(ValueError, match=r"holds 4 weight arrays, the model has 6 parameters"):
        deeper.load_weights(path)
    with pytest.raises(RuntimeError, match="not built"):
        nn.Sequential([nn.Dense(4), nn.Dense(3)]).load_weights(path)
    as64 = nn.Sequential([nn.Dense(4, input_dim=3, activation="relu"), nn.Dense(3)], seed=3, dtype="float64")
    as64.load_weights(path)  # float32 file into a float64 model: cast exactly
    for a, b in zip(as64.get_weights(), good_model().get_weights()):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


CANARY = """
import pathlib
pathlib.Path(__file__).with_name("canary_ran").write_text("imported")

def boom(*args, **kwargs):
    pathlib.Path(__file__).with_name("canary_called").write_text("called")

class Boom:
    def __init__(self, *args, **kwargs):
        boom()
"""


def test_loading_never_imports_or_calls_what_the_file_names(tmp_path, monkeypatch):
    (tmp_path / "h5_canary_mod.py").write_text(CANARY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("h5_canary_mod", None)
    names = ["h5_canary_mod.Boom", "h5_canary_mod.boom", "h5_canary_mod:Boom", "h5_canary_mod"]
    edits = [
        lambda c, n: c["layers"][0].update(name=n),
        lambda c, n: c["compile"]["loss"].update(name=n),
        lambda c, n: c["compile"]["optimizer"].update(name=n),
        lambda c, n: c["compile"].update(metrics=[n]),
        lambda c, n: c["layers"][0]["config"].update(activation={"name": n, "config": {}}),
        lambda c, n: c["layers"][1]["config"].update(bias_init={"name": n, "config": {}}),
    ]
    refusals = 0
    for edit in edits:
        for name in names:
            path = edit_config(tmp_path, lambda c, e=edit, n=name: e(c, n))
            with pytest.raises(ValueError):
                nn.load_model(path)
            refusals += 1
    # a pickle that would import the canary and call it, as an object-array member
    payload = b"\x80\x02ch5_canary_mod\nboom\n)R."
    evil = npy_header("|O", (1,), payload)
    for member in ("weights/0000.npy", "optimizer/0000_m.npy"):
        with pytest.raises(ValueError, match="dtype object"):
            nn.load_model(edit_member(tmp_path, member, evil))
        refusals += 1
    assert refusals == len(edits) * len(names) + 2
    assert "h5_canary_mod" not in sys.modules
    assert not (tmp_path / "canary_ran").exists() and not (tmp_path / "canary_called").exists()
    import h5_canary_mod  # noqa: F401 -- the canary itself works: importing it leaves its mark

    assert (tmp_path / "canary_ran").exists()
    sys.modules.pop("h5_canary_mod", None)


def test_saved_file_layout_and_manifest(tmp_path):
    path = good_file(tmp_path)
    members = read_members(path)
    assert sorted(members) == sorted(["manifest.json", "config.json", *[f"weights/{i:04d}.npy" for i in range(4)],
                                      *[f"optimizer/{i:04d}_{s}.npy" for i in range(4) for s in ("m", "v")]])
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "nnlib" and manifest["format_version"] == saving.FORMAT_VERSION
    for name, entry in manifest["members"].items():
        assert entry == {"size": len(members[name]), "sha256": hashlib.sha256(members[name]).hexdigest()}
    config = json.loads(members["config.json"])
    assert [layer["name"] for layer in config["layers"]] == ["dense", "dense"]
    assert config["compile"]["optimizer"]["name"] == "adam" and config["compile"]["metrics"] == ["accuracy"]
    for name in members:
        if name.endswith(".npy"):
            np.load(io.BytesIO(members[name]), allow_pickle=False)  # plain arrays


def test_save_refuses_unregistered_parts_and_unbuilt_models(tmp_path):
    class Unregistered(nn.ReLU):
        pass

    model = nn.Sequential([nn.Dense(3, input_dim=2), Unregistered(name="custom")], seed=0)
    with pytest.raises(ValueError, match="Unregistered is not registered in nnlib's layer registry"):
        model.save(tmp_path / "m.nnlib")
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([nn.Dense(3)]).save(tmp_path / "m.nnlib")
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([nn.Dense(3)]).save_weights(tmp_path / "m.nnlib")
    assert os.listdir(tmp_path) == []


def test_save_keeps_file_permissions(tmp_path):
    path = tmp_path / "m.nnlib"
    model = good_model()
    model.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # as open() would, not mkstemp's 0600
    os.chmod(path, 0o640)
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("width", [10**12, 10**8])
@pytest.mark.parametrize("kind", ["batch_normalization", "dropout", "relu"])
def test_forged_width_is_refused_before_building(tmp_path, kind, width):
    """A forged input_shape is refused before anything is built: past 2**31 numbers per sample as invalid,
    below that because the parameter shapes it implies differ from the stored arrays."""
    def forge(config):
        config["input_shape"] = [width]
        config["layers"].insert(0, {"name": kind, "config": {}})
        config["layers"][1]["config"]["input_dim"] = None

    path = edit_config(tmp_path, forge)
    error, peak = measured(lambda: nn.load_model(path))
    assert isinstance(error, ValueError), repr(error)
    refused = rf"invalid input_shape \({width},\)|the layers in config.json need \[(\({width},\), )*\({width}, 4\)"
    assert re.search(refused, str(error)), str(error)
    assert peak < MEMORY_BOUND


def stateful_file(folder: Path) -> Path:
    model = nn.Sequential([nn.Dense(4, input_dim=3), nn.BatchNormalization(), nn.Dense(3)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(X, Y, epochs=1, batch_size=2, verbose=0)
    path = Path(folder) / "bn.nnlib"
    model.save(path)
    return path


@pytest.mark.parametrize("change,match", [
    (lambda m: m.pop("state/0001_moving_variance.npy"), r"layer 1 \(.*\) needs state \['moving_mean', "
                                                        r"'moving_variance'\], the file holds \['moving_mean'\]"),
    (lambda m: m.update({"state/0001_moving_variance.npy": npy(np.full(4, -1.0, np.float32))}),
     r"invalid state for layer 1.*moving_variance"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.full(4, np.nan, np.float32))}),
     r"invalid state for layer 1.*finite"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.zeros(5, np.float32))}),
     r"invalid state for layer 1.*shape"),
    (lambda m: m.update({"state/0000_moving_mean.npy": npy(np.zeros(4, np.float32))}), r"layer 0 .*needs state \[\]"),
    (lambda m: m.update({"state/0009_x.npy": npy(np.zeros(4, np.float32))}), r"state/0009_x\.npy names layer 9"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.array([[1.0, None]], dtype=object),
                                                           allow_pickle=True)}), r"dtype object"),
], ids=["missing", "negative_variance", "nan_mean", "wrong_shape", "stateless_layer", "no_such_layer", "pickle"])
def test_bad_layer_state_is_refused(tmp_path, change, match):
    members = read_members(stateful_file(tmp_path))
    assert nn.load_model(write_zip(tmp_path / "same.nnlib", members))  # the re-signed original loads
    change(members)
    with pytest.raises(ValueError, match=match):
        nn.load_model(write_zip(tmp_path / "bad.nnlib", members))


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_format_version_1_files_still_load_bit_for_bit(name):
    """Files written by nnlib before the optimizer state became plain (format version 1, see
    tests/data/make_legacy_v1.py) load with the same weights, layer state and predictions, bit for
    bit; Adam's moments, stored rescaled then, come back as PyTorch's m and v."""
    expected = np.load(DATA / f"legacy_v1_{name}_expected.npz", allow_pickle=False)
    model = nn.load_model(DATA / f"legacy_v1_{name}.nnlib")
    params = model.parameters()
    for i, p in enumerate(params):
        np.testing.assert_array_equal(p.value, expected[f"weight_{i}"])
        assert p.value.dtype == np.float32
    np.testing.assert_array_equal(model.predict(expected["x"]), expected["predict"])
    for i, p in enumerate(params):
        for slot in model.optimizer.slots:
            stored = expected[f"state_{i}_{slot}"]
            got = model.optimizer.state[p][slot]
            if name == "adam":  # rescaled in the file; PyTorch's quantities in memory, as moments() gave them
                np.testing.assert_array_equal(got, expected[f"torch_{i}_{slot}"])
                beta = model.optimizer.beta1 if slot == "m" else model.optimizer.beta2
                np.testing.assert_array_equal(got, stored * (1.0 - beta))
            else:
                np.testing.assert_array_equal(got, stored)
    assert model.optimizer.iterations == 6  # two epochs of three batches
    # training resumes from there as it did before the change, to float32 rounding
    rng = np.random.default_rng(7)
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=24)
    np.testing.assert_array_equal(x, expected["x"])
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0, tol=None)
    resumed = np.concatenate([w.ravel() for w in model.get_weights()])
    np.testing.assert_allclose(resumed, expected["weights_after_epoch_3"], rtol=1e-5, atol=1e-6)


def test_files_name_their_model_class_and_version(tmp_path):
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    path = tmp_path / "m.nnlib"
    model.save(path)
    members = read_members(path)
    assert json.loads(members["config.json"])["model"] == "sequential"
    assert json.loads(members["manifest.json"])["format_version"] == saving.FORMAT_VERSION == 3
    config = json.loads(members["config.json"])
    config["model"] = "functional"
    members["config.json"] = json.dumps(config).encode()
    with pytest.raises(ValueError, match=r"model class 'functional' is not one of nnlib's: sequential"):
        nn.load_model(write_zip(tmp_path / "forged.nnlib", members))


def test_a_subclass_of_sequential_saves_and_loads_as_the_class_it_extends(tmp_path):
    """As before model files named their class: a user's subclass that registers nothing is saved as
    the registered class it derives from, and loads as that class, with the same predictions."""

    class MySequential(nn.Sequential):
        def describe(self):
            return "mine"

    model = MySequential([nn.Dense(3, input_dim=4, activation="relu"), nn.Dense(2)], seed=0)
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model.train_on_batch(x, np.zeros((5, 2)))
    model.save(tmp_path / "mine.nnlib")
    assert json.loads(read_members(tmp_path / "mine.nnlib")["config.json"])["model"] == "sequential"
    loaded = nn.load_model(tmp_path / "mine.nnlib")
    assert type(loaded) is nn.Sequential
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_model_class_outside_the_registry_is_refused_by_name(tmp_path):
    class Stranger:
        pass

    with pytest.raises(ValueError, match=r"Stranger derives from no model class in nnlib\.saving\.models"):
        saving.model_config(Stranger())
