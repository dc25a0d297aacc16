"""A run directory and what every step does with it.

    layout.py      every path of a run (RunLayout)
    context.py     RunContext: the run, its resolved config, device and datasets
    per_image.py   the skeleton of the per-image stages (resumable, sharded, parallel)
    provenance.py  run_info.json: versions, commit, hardware
    timer.py       the stage clock of `wsss run`
    closing.py     the stage table and the closing lines of `wsss run`
    lock.py        one command per run directory
"""
