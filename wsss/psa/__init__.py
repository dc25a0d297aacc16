"""AffinityNet / PSA (Ahn & Kwak, CVPR 2018): CAMs -> confident seeds -> AffinityNet -> random walk.

    make_aff_labels.py  `wsss make-aff-labels`: seeds (+ dense CRF) of the train split
    train_aff.py        `wsss train-aff`: AffinityNet on the seeds' pixel pairs
    make_pseudo.py      `wsss make-pseudo`: random walk (+ dense CRF) pseudo labels
    eval_pseudo.py      `wsss eval-pseudo`: CAM, +RW, +CRF against masks
    tune.py             `wsss tune`: the walk's hyperparameters on a labelled subset
    pipeline.py         `wsss run` with ``pipeline: affinity``

Its algorithm is shared with IRN: the seeds in :mod:`wsss.cam.seeds`, the pixel pairs, the
affinity loss and the random walk in :mod:`wsss.affinity`.
"""
