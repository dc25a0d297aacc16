#!/bin/bash
# make-psa-pseudo on msrc train: 1 process x 1 thread, 2 processes x 1 thread, 1 process x 2 threads; quiet machine
cd "$(dirname "$0")/.."
R=runs/bench_pseudo; mkdir -p $R
rm -rf runs/msrc_bench && mkdir -p runs/msrc_bench && cp -r runs/msrc/{cams,psa,psa_labels,cam,config.yaml} runs/msrc_bench/
for v in w1t1 w2t1 w1t2 w2t1b w1t1b; do
  rm -rf runs/msrc_bench/pseudo
  case $v in w1t1*) env="OMP_NUM_THREADS=1"; w=1;; w2t1*) env="OMP_NUM_THREADS=1"; w=2;; w1t2) env="OMP_NUM_THREADS=2"; w=1;; esac
  load=$(cut -d' ' -f1-3 /proc/loadavg); start=$(date +%s.%N)
  env $env .venv/bin/python -m wsss make-psa-pseudo --config configs/msrc.yaml --run-dir runs/msrc_bench --split train --workers $w --no-progress > $R/$v.log 2>&1
  rc=$?; end=$(date +%s.%N)
  echo "variant=$v rc=$rc wall_s=$(echo "$end - $start" | bc) load_before=[$load] load_after=[$(cut -d' ' -f1-3 /proc/loadavg)] $(grep -o 'make-psa-pseudo: [0-9]* images in [0-9.]* s ([0-9.]* images/s' $R/$v.log)" | tee -a $R/results.txt
  mv runs/msrc_bench/pseudo/train $R/out_$v
done
