"""Training: one recipe into one run directory.

step.py      the D step, G step and EMA update, and the objective (method, loss, regularisers)
loop.py      the run lifecycle: build, resume, signals, the schedule of logs, evaluations, sheets and checkpoints
stream.py    the shuffled, flipped real batches, gathered on the device
logs.py      log lines read from the device without stalling it, history rows, gradient probes
state.py     the checkpoint payload, restoring a run to it, saving it
checkpoint.py  checkpoint files written atomically with their hashes; the newest valid one for a resume
runinfo.py   run.json's identity and environment; whether a directory may take a recipe
schedule.py  learning-rate and EMA schedules
fast.py      Adam for CUDA-graph capture and the runner that captures the step
ema.py       the EMA of G;  samples.py  fixed-z sample sheets
"""
