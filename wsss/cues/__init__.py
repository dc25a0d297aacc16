"""Cues: what the seed-and-walk methods (PSA, IRN) read from the stages before them.

    cam.py            a run's CAM files of a split, their settings, labels and background score from them
    cam_threshold.py  the CAMs' background threshold t* without masks (``cam.bg_threshold``), the
                      seed thresholds around it
    saliency.py       `wsss make-saliency`: an SSNet's saliency maps of a split, their threshold s*
                      and the saliency cue of the seeds and the walk (``saliency:``)
"""
