"""Benchmark sweeps: run (Ray), tables, plots, report.

The files a sweep writes beside its run directories (RESULTS/DATASET/LABEL/seedN/, each an
ordinary `offrl train` run directory, see offrl.training):
"""

SWEEP_JSON = "sweep.json"  # datasets and labels in spec order, every planned run
SWEEP_YAML = "sweep.yaml"  # the spec as given
FAILED_FILE = "failed.json"  # in a run directory: {"error": one line, "traceback": ...}
