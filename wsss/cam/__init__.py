"""Class activation maps, the first stage of every pipeline (PSA Sec. 3.1).

    algorithm.py  CAMs from a classifier's weights, normalisation, CAM -> labels (pure functions)
    seeds.py      background score (1 - max CAM)^alpha, confident seeds, scores -> labels (PSA and IRN)
    train.py      `wsss train-cam`: the multi-label classifier
    make.py       `wsss make-cam`: multi-scale + flip CAMs of a split, one .npz per image
    evaluate.py   `wsss eval-cam`: mIoU against masks over a sweep of background thresholds
"""
