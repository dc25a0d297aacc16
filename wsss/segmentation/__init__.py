"""The last stage: a DeepLab-style segmentation network trained on a pipeline's pseudo labels.

    train.py     `wsss train-seg` (``--labels gt``: the fully supervised upper bound)
    evaluate.py  `wsss eval-seg`: single-scale, multi-scale + flip, +/- dense CRF
"""
