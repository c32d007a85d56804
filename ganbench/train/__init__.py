"""Training: one recipe into one run directory.

step.py      the D step, G step and EMA update, and the objective (method, loss, regularisers)
loop.py      the run lifecycle: build, resume, the schedule of logs, evaluations, sheets and checkpoints
signals.py   Ctrl-C, SIGTERM and SIGHUP as a request to stop at the end of the step
split.py     one step's global batch cut into pieces: train.accumulate micro-batches per process
distributed.py  one run on several processes (torchrun): gradients all-reduced, rank 0 writes
sharded_evaluation.py  in-training evaluation of such a run, sharded across the processes, scored on rank 0
stream.py    the shuffled, flipped real batches (with their labels), gathered on the device
logs.py      log lines read from the device without stalling it, history rows, gradient probes
state.py     the checkpoint payload, restoring a run to it, saving it
checkpoint.py  checkpoint files written atomically with their hashes; the newest valid one for a resume
runinfo.py   run.json's identity and environment; whether a directory may take a recipe
schedule.py  learning-rate and EMA schedules
fast.py      Adam for CUDA-graph capture and the runner that captures the step
ema.py       the EMA of G;  samples.py  fixed-z sample sheets
"""
