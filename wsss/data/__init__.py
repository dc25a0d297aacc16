"""Datasets (VOC layout, saliency folders, the generated demo set) and joint augmentation."""

from .voc import VOC_CLASSES, VocDataset

__all__ = ["VOC_CLASSES", "VocDataset"]
