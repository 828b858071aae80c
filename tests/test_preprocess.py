"""One preprocessing contract: the training loader and the serving path give identical inputs."""

import numpy as np
import pytest

from medcore.imaging import folders
from medcore.imaging.io import read_radiograph
from medcore.imaging.preprocess import to_model_input
from medcore.training import datasets
from tests.synthetic import encode, make_dicom


def _write_folder(root, rng):
    files = {}
    for label in folders.XRAY_CLASSES:
        (root / label).mkdir(parents=True)
        for i in range(3):
            image = rng.random((300 + 40 * i, 240)).astype(np.float32)
            path = root / label / f"person{i}_{label.lower()}_{i}.png"
            path.write_bytes(encode(image, "PNG"))
            files[path] = image
    dicom = root / "PNEUMONIA" / "person9_virus_1.dcm"
    dicom.write_bytes(make_dicom((rng.random((256, 200)) * 4000).astype(np.uint16), bits=12))
    return files


def test_training_loader_matches_serving_path(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(0))
    folder = folders.list_image_folder(tmp_path)
    trained_on, skipped = datasets.load_images(folder.files, 64)
    assert skipped == {}
    for path, array in zip(folder.files, trained_on):
        served = to_model_input(read_radiograph(path.read_bytes(), path.name).pixels, 64)
        assert np.allclose(array.astype(np.float32), served, atol=2e-3)  # float16 cache rounding only


def test_cache_is_reused_and_keyed_by_content(tmp_path):
    data = tmp_path / "data"
    _write_folder(data, np.random.default_rng(1))
    folder = folders.list_image_folder(data)
    first = datasets.load_cached(folder, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    second = datasets.load_cached(folder, 32, tmp_path / "cache")
    assert np.array_equal(first.images, second.images)
    folder.files[0].write_bytes(encode(np.zeros((300, 300), np.float32) + 0.5, "PNG"))
    datasets.load_cached(folder, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # changed content -> new cache entry


def test_a_truncated_or_synthetic_film_is_skipped_and_counted_not_fatal(tmp_path):
    """L2: one bad film in a training folder is left out and reported; the rest trains."""
    from medcore.imaging.synthetic import mark_synthetic

    data = tmp_path / "data"
    files = _write_folder(data, np.random.default_rng(2))
    good = next(iter(files))
    (data / "NORMAL" / "person90_cut.png").write_bytes(good.read_bytes()[:200])  # truncated
    (data / "PNEUMONIA" / "person91_virus_1.png").write_bytes(mark_synthetic(files[good], "g"))
    folder = folders.list_image_folder(data)
    loaded = datasets.load_cached(folder, 32, tmp_path / "cache")
    assert loaded.skipped == {"unreadable": 1, "synthetic": 1}
    assert len(loaded.folder.files) == len(folder.files) - 2 == len(loaded.images)
    assert all(p.name not in ("person90_cut.png", "person91_virus_1.png") for p in loaded.folder.files)
    again = datasets.load_cached(folder, 32, tmp_path / "cache")  # from the cache: the same films left out
    assert again.folder.files == loaded.folder.files and again.skipped == loaded.skipped
    assert "1 unreadable" in loaded.describe_skipped() and "1 synthetic" in loaded.describe_skipped()


def test_a_model_sees_its_own_split_of_its_own_data_again(tmp_path):
    data = tmp_path / "data"
    _write_folder(data, np.random.default_rng(2))
    folder = folders.list_image_folder(data)
    meta = {"image_size": 32, "data": {"fingerprint": folders.fingerprint(folder.files, folder.labels)},
            "options": {"val_fraction": 0.3, "seed": 5}}
    split = datasets.model_split(meta, data, tmp_path / "cache")
    train_idx, val_idx = folders.split_by_patient(folder, 0.3, 5)
    assert np.array_equal(split.train_idx, train_idx) and np.array_equal(split.val_idx, val_idx)
    films, labels = split.validation()
    assert films.dtype == np.float32 and films.shape == (len(val_idx), 32, 32, 1)
    assert np.array_equal(labels, folder.labels[val_idx])
    folder.files[0].write_bytes(encode(np.zeros((300, 300), np.float32) + 0.5, "PNG"))
    with pytest.raises(ValueError, match="not the data set this model was trained on"):
        datasets.model_split(meta, data, tmp_path / "cache")


def test_model_input_shape_and_standardisation():
    rng = np.random.default_rng(2)
    wide = rng.random((500, 900)).astype(np.float32)
    x = to_model_input(wide, 128)
    assert x.shape == (128, 128, 1) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert np.array_equal(to_model_input(np.full((100, 100), 0.3, np.float32), 64), np.zeros((64, 64, 1)))
    # exposure differences disappear: a linearly brighter film gives the same input
    assert np.allclose(to_model_input(wide * 0.5 + 0.2, 64), to_model_input(wide, 64), atol=1e-4)


def test_patient_split_never_shares_a_child_and_is_stratified():
    names = [f"person{i // 3}_bacteria_{i}.jpeg" for i in range(300)] + [f"IM-{i // 2:04d}-000{i % 2}.jpeg"
                                                                         for i in range(100)]
    from pathlib import Path
    folder = folders.ImageFolder([Path(n) for n in names], np.array([1] * 300 + [0] * 100),
                                  [folders.patient_id(Path(n)) for n in names])
    train, val = folders.split_by_patient(folder, 0.2, seed=42)
    assert not {folder.groups[i] for i in train} & {folder.groups[i] for i in val}
    assert abs(folder.labels[val].mean() - 0.75) < 0.05
    again = folders.split_by_patient(folder, 0.2, seed=42)
    assert np.array_equal(again[1], val)
    assert folders.patient_id(Path("NORMAL2-IM-0383-0001.jpeg")) == "NORMAL2-IM-0383"


def test_training_augmentation_zooms_in_further_than_out():
    """New patients' normal films framed tightly were read as pneumonia: training must show tight framings."""
    from medcore.training.train_xray import augmenter

    films = np.zeros((64, 32, 32, 1), np.float32)
    films[:, 8:24, 8:24] = 1.0  # a 16 px square, a quarter of the film
    labels = np.zeros((64, 1), np.float32)

    def bright_share(zoom_in: float) -> np.ndarray:
        augmented, _ = augmenter(seed=3, zoom_in=zoom_in)(films, labels)
        return (np.asarray(augmented) > 0.5).mean(axis=(1, 2, 3))

    tight, mild = bright_share(0.3), bright_share(0.1)
    assert np.median(tight) > np.median(mild) > 0.2
    assert tight.max() > 0.25 * 1.3 ** 2 * 0.9  # some films are zoomed in by close to 30 % on both axes
