"""Stage 3, measurement inside a worker: time, memory, FLOPs, accuracy, telemetry and profiles.

speed.py (timed steps, memory, FLOPs) · devices.py (CPU and CUDA behind one protocol) ·
accuracy.py and training.py (the accuracy metric) · telemetry/ (NVML, RAPL) · profiling/ (py-spy,
torch.profiler).
"""
