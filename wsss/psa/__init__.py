"""AffinityNet / PSA (Ahn & Kwak, CVPR 2018): CAMs -> confident seeds -> AffinityNet -> random walk.

    seeds.py            background score (1 - max CAM)^alpha and confident seeds (pure functions)
    make_aff_labels.py  `wsss make-aff-labels`: seeds (+ dense CRF) of the train split
    train_aff.py        `wsss train-aff`: AffinityNet on the seeds' pixel pairs
    make_pseudo.py      `wsss make-pseudo`: random walk (+ dense CRF) pseudo labels
    eval_pseudo.py      `wsss eval-pseudo`: CAM, +RW, +CRF against masks
    tune.py             `wsss tune`: the walk's hyperparameters on a labelled subset
    pipeline.py         `wsss run` with ``pipeline: affinity``

The pixel-pair machinery and the random walk are in :mod:`wsss.affinity` (shared with IRN).
"""
