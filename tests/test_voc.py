import json
import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import load_rgb


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(tiny_dataset, root)
    return root


def test_labels_from_json_match_masks(tiny_dataset):
    voc = VocDataset(tiny_dataset, "train")
    assert voc.class_names[0] == "background" and len(voc) == 32
    from_masks = VocDataset(tiny_dataset, "train", labels="masks")
    np.testing.assert_array_equal(voc.labels, from_masks.labels)
    sample = voc[0]
    assert sample["image"].shape == (80, 80, 3) and sample["image"].dtype == np.uint8
    assert sample["mask"].shape == (80, 80)
    assert sample["label"].shape == (voc.num_classes - 1,)


@pytest.mark.parametrize("int_keys", [False, True])
def test_labels_from_cls_labels_npy(dataset_copy, int_keys):
    voc = VocDataset(dataset_copy, "train")
    table = {}
    for image_id, vector in zip(voc.ids, voc.labels):
        # PSA keys by the id string; IRN by the id's digits as an integer
        key = int(image_id.replace("train_", "1")) if int_keys else image_id
        table[key] = vector
    if int_keys:  # rename ids so their digits form the integer key, like 2007_000032 -> 2007000032
        split = dataset_copy / "ImageSets/Segmentation/train.txt"
        ids = [f"1_{i[len('train_'):]}" for i in voc.ids]
        for old, new in zip(voc.ids, ids):
            (dataset_copy / "JPEGImages" / f"{old}.jpg").rename(dataset_copy / "JPEGImages" / f"{new}.jpg")
        split.write_text("\n".join(ids) + "\n")
    (dataset_copy / "image_labels.json").unlink()
    np.save(dataset_copy / "cls_labels.npy", table)
    loaded = VocDataset(dataset_copy, "train", labels="auto")
    np.testing.assert_array_equal(loaded.labels, voc.labels)


def _write_npy_pickle(path, payload):
    """An .npy file of a 0-d object array whose pickle stream is ``payload`` (what np.save of a dict writes)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        fh.write(payload)


class _RunsCode:
    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


@pytest.mark.parametrize("call", ["os.system", "builtins.exec"])
def test_cls_labels_npy_that_runs_code_is_refused(dataset_copy, tmp_path, call):
    marker = tmp_path / "ran"
    command = {"os.system": (os.system, f"touch {marker}"),
               "builtins.exec": (exec, f"open({str(marker)!r}, 'w').close()")}[call]
    (dataset_copy / "image_labels.json").unlink()
    path = dataset_copy / "cls_labels.npy"
    _write_npy_pickle(path, pickle.dumps(np.array({"train_0000": _RunsCode(*command)}, dtype=object), protocol=3))
    refused = r"cls_labels\.npy: not a plain label table; it asks to run code \((posix|os|builtins)\.(system|exec)\); refused"
    with pytest.raises(WsssError, match=refused):
        VocDataset(dataset_copy, "train")
    assert not marker.exists()


def test_cls_labels_npy_as_plain_arrays(dataset_copy):
    voc = VocDataset(dataset_copy, "train")
    (dataset_copy / "image_labels.json").unlink()
    path = dataset_copy / "cls_labels.npy"
    table = np.zeros(len(voc), dtype=[("id", "U16"), ("label", np.float32, (voc.num_classes - 1,))])
    table["id"], table["label"] = voc.ids, voc.labels
    np.save(path, table)
    np.testing.assert_array_equal(VocDataset(dataset_copy, "train").labels, voc.labels)
    np.save(path, np.ones((3, voc.num_classes - 1), np.float32))  # no id column: wrong width
    with pytest.raises(WsssError, match=r"cls_labels\.npy: label vector of 1 has shape \(\d+,\)"):
        VocDataset(dataset_copy, "train")
    np.save(path, {"train_0000": np.zeros(3, np.float32)})
    with pytest.raises(WsssError, match=r"cls_labels\.npy: label vector of 'train_0000' has shape \(3,\), expected"):
        VocDataset(dataset_copy, "train")


def test_unknown_class_name_names_the_file(dataset_copy):
    path = dataset_copy / "image_labels.json"
    table = json.loads(path.read_text())
    table["train_0003"] = ["unicorn"]
    path.write_text(json.dumps(table))
    with pytest.raises(WsssError, match=r"image_labels\.json.*train_0003.*unicorn"):
        VocDataset(dataset_copy, "train")


def test_image_without_labels_entry(dataset_copy):
    path = dataset_copy / "image_labels.json"
    table = json.loads(path.read_text())
    del table["train_0002"]
    path.write_text(json.dumps(table))
    with pytest.raises(WsssError, match="no labels for image 'train_0002'"):
        VocDataset(dataset_copy, "train")


def test_missing_image_names_the_file(dataset_copy):
    (dataset_copy / "JPEGImages" / "train_0005.jpg").unlink()
    voc = VocDataset(dataset_copy, "train")
    with pytest.raises(WsssError, match=r"train_0005\.jpg: image not found"):
        voc[5]


def test_corrupt_jpeg_names_the_file(dataset_copy):
    path = dataset_copy / "JPEGImages" / "train_0001.jpg"
    path.write_bytes(path.read_bytes()[: 200])
    voc = VocDataset(dataset_copy, "train")
    with pytest.raises(WsssError, match=r"train_0001\.jpg: cannot decode"):
        voc[1]


def test_mask_of_wrong_size_names_the_file(dataset_copy):
    path = dataset_copy / "SegmentationClass" / "train_0004.png"
    Image.open(path).resize((32, 40), Image.NEAREST).save(path)
    voc = VocDataset(dataset_copy, "train")
    with pytest.raises(WsssError, match=r"train_0004\.png: mask is 32x40 but its image is 80x80"):
        voc[4]


def test_missing_split_and_root(tmp_path, tiny_dataset):
    with pytest.raises(WsssError, match="split file not found"):
        VocDataset(tiny_dataset, "test")
    with pytest.raises(WsssError, match="dataset root not found"):
        VocDataset(tmp_path / "nothing", "train")


def test_grayscale_and_rgba_images_load_as_rgb(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 100, np.uint8), "L").save(gray)
    rgba = tmp_path / "a.png"
    arr = np.zeros((5, 7, 4), np.uint8)
    arr[..., 0] = 255
    arr[..., 3] = 0  # fully transparent: composited over white
    arr[0, 0, 3] = 255
    Image.fromarray(arr, "RGBA").save(rgba)
    g = load_rgb(gray)
    a = load_rgb(rgba)
    assert g.shape == (5, 7, 3) and (g == 100).all()
    assert a.shape == (5, 7, 3) and tuple(a[0, 0]) == (255, 0, 0) and tuple(a[1, 1]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rot.jpg"
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(path, exif=exif)
    assert load_rgb(path).shape == (20, 10, 3)
