"""PSA: AffinityNet (Ahn & Kwak, CVPR 2018): CAMs -> confident seeds -> AffinityNet -> random walk.

    make_labels.py   `wsss make-psa-labels`: seeds (+ dense CRF) of the train split
    train.py         `wsss train-psa`: AffinityNet on the seeds' pixel pairs
    make_pseudo.py   `wsss make-psa-pseudo`: random walk (+ dense CRF) pseudo labels
    tune.py          `wsss tune` with ``pipeline: psa``: the walk's hyperparameters on a labelled subset
    pipeline.py      its stages, which `wsss run` (``wsss.methods``) runs between the CAMs and train-seg

Settings: the ``psa:`` section. What it shares with IRN lives in :mod:`wsss.walk` (the seeds, the
pixel pairs, the affinity loss, the random walk, label writing, eval-pseudo, the tuner's sweep)
and :mod:`wsss.cues` (the CAMs and their threshold t*, the saliency cue).
"""
