"""The sections of benchmarks/benchmark.py, one module each (`common`: what they share).

data, train   data.py       data path alone, then in training steps
loop          loop.py       training-loop efficiency
overhead      overhead.py   per-job fixed cost, start to first step
dag           dag.py        snakemake -n of generated studies
gpu           gpu.py        CUDA only
workflow, main workflow.py  whole studies through Snakemake
"""
