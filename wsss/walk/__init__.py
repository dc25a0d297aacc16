"""The random-walk machinery PSA and IRN share; neither imports the other.

    affinity.py  pixel pairs, affinities, the affinity loss and the random walk T = D^-1 A^beta
                 (AffinityNet Eq. 7-12), on the grid and back (pure functions)
    seeds.py     background score, confident seeds, scores -> labels (pure functions)
    labels.py    the seed-labels stage and the writing of a walk's labels (+ CRF)
    evaluate.py  `wsss eval-pseudo`: CAM, +RW, +CRF against masks
    tune.py      the sweep of `wsss tune` over a walk's settings
    pipeline.py  Stage, WalkStages: how a method declares its seeds, network and walk
"""
