"""SSNet (Zeng et al., ICCV 2019): joint saliency detection and weakly supervised segmentation.

    losses.py    Lc, Ls1, Ls2 (pure functions; the aggregation S = sum_i v_i H_i is
                 ``wsss.inference.saliency.saliency_map``, shared with inference)
    train.py     `wsss train-ssnet --stage 1|2`
    mine.py      `wsss make-ssnet-pseudo`: pseudo labels mined by a trained SSNet
    evaluate.py  `wsss eval-ssnet`, `wsss eval-ssnet-pseudo`
    eval_saliency.py  `wsss eval-saliency`: saliency benchmarks (ECSSD, DUTS-TE)
    pipeline.py  `wsss run` with ``pipeline: ssnet``

SSNet provides a model; PSA and IRN consume its maps as a cue (:mod:`wsss.cues.saliency`).
"""
