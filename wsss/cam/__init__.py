"""Class activation maps, the first stage of every seed-and-walk method (PSA Sec. 3.1).

    algorithm.py  CAMs from a classifier's features and weights, normalisation (pure functions)
    train.py      `wsss train-cam`: the multi-label classifier
    make.py       `wsss make-cam`: multi-scale + flip CAMs of a split, one .npz per image
    evaluate.py   `wsss eval-cam`: mIoU against masks over a sweep of background thresholds

What later stages read of the CAMs (their files, the threshold t*) is in :mod:`wsss.cues`.
"""
