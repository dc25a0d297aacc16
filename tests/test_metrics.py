import numpy as np
import pytest

from wsss.metrics import confusion_matrix, format_iou_table, iou_per_class, mean_iou, segmentation_report


def test_known_confusion_matrix_gives_known_miou():
    # rows = ground truth, cols = prediction
    conf = np.array([[50, 10, 0],
                     [5, 30, 5],
                     [0, 0, 0]])
    iou = iou_per_class(conf)
    assert iou[0] == pytest.approx(50 / (50 + 10 + 5))
    assert iou[1] == pytest.approx(30 / (30 + 5 + 5 + 10))
    assert iou[2] == pytest.approx(0.0)  # predicted 5 times, never present: IoU 0, counted
    assert mean_iou(conf) == pytest.approx((50 / 65 + 30 / 50 + 0) / 3)


def test_class_absent_everywhere_is_not_averaged():
    conf = np.array([[4, 0, 0], [0, 6, 0], [0, 0, 0]])
    assert np.isnan(iou_per_class(conf)[2])
    assert mean_iou(conf) == pytest.approx(1.0)


def test_confusion_matrix_counts_pixels_and_skips_void():
    gt = np.array([[0, 1, 255], [2, 2, 1]])
    pred = np.array([[0, 2, 1], [2, 0, 1]])
    conf = confusion_matrix(pred, gt, 3)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 0] = 1
    expected[1, 2] = 1
    expected[1, 1] = 1
    expected[2, 2] = 1
    expected[2, 0] = 1
    np.testing.assert_array_equal(conf, expected)
    with pytest.raises(ValueError):
        confusion_matrix(pred[:1], gt, 3)


def test_report_and_table():
    conf = np.array([[8, 2], [2, 8]])
    report = segmentation_report(conf, ["background", "cat"])
    assert report["miou"] == pytest.approx(100 * 8 / 12, abs=0.01)
    table = format_iou_table({"CAM": report["per_class_iou"]})
    assert "cat" in table and "66.7" in table
